//! `pkcs11-fault`: a PKCS#11 module for tests that wraps a real one (SoftHSM2) and makes chosen
//! calls fail, so the tests can show what p11smime does when a card is pulled out, a PIN is
//! wrong or locked, or a mechanism is missing, without a card to break. Test use only.
//!
//! It owns the function list it hands out: a copy of the real module's, with the functions
//! below replaced by interceptors that consult the plan and otherwise forward.
//!
//! # Environment
//!
//! - `P11FAULT_MODULE`: path of the real module (required; `C_GetFunctionList` fails without).
//! - `P11FAULT_CONFIG`: path of the plan file. It is read again on **every** intercepted call,
//!   so a test can change what a running process meets ("the card is pulled out now"). No
//!   variable, no file or an empty file: every call passes through unchanged.
//!
//! # Plan file
//!
//! One instruction a line; `#` starts a comment (at the start of a word); blank lines are
//! ignored. A line that does not parse is ignored, and said so in the log when there is one.
//!
//! ```text
//! fail C_Decrypt CKR_DEVICE_REMOVED          # answer this instead of calling the real module
//! fail C_Decrypt CKR_DEVICE_REMOVED after=3  # ... from the 4th call in this process on
//! login CKR_PIN_INCORRECT [after=N]          # the same as `fail C_Login CKR_PIN_INCORRECT`
//! removed                                    # every token is out of its reader (see below)
//! flags COUNT_LOW FINAL_TRY LOCKED PROTECTED_AUTH_PATH TO_BE_CHANGED
//! no-mechanism CKM_RSA_PKCS_OAEP [CKM_…|0x…]… # the token does not have these mechanisms
//! slow C_Decrypt 200                         # wait 200 ms, read the plan again, then answer
//! log /path/calls.log                        # append "C_Name CKR_RV" per intercepted call
//! ```
//!
//! - `fail FUNCTION RV [after=N]`: `FUNCTION` is an intercepted one, `RV` any `CKR_*` name of
//!   PKCS#11 3.x or a number (`0x…`). Calls are counted per function and per process from the
//!   module's loading, failed ones included; `after=N` lets the first `N` through. The first
//!   matching line wins. An error injected into `C_Decrypt`, `C_Sign`, `C_SignUpdate` or
//!   `C_SignFinal` also ends the real module's operation (run to completion into a scratch
//!   buffer that is wiped), since in PKCS#11 any error but `CKR_BUFFER_TOO_SMALL` ends it.
//! - `flags`: OR-ed into `CK_TOKEN_INFO.flags` from `C_GetTokenInfo` (`CKF_USER_PIN_COUNT_LOW`,
//!   `CKF_USER_PIN_FINAL_TRY`, `CKF_USER_PIN_LOCKED`, `CKF_PROTECTED_AUTHENTICATION_PATH`,
//!   `CKF_USER_PIN_TO_BE_CHANGED`; the `CKF_*` names work too). With `LOCKED`, a user `C_Login`
//!   answers `CKR_PIN_LOCKED` without reaching the real module, as a locked card would.
//! - `no-mechanism`: left out of `C_GetMechanismList`; `C_GetMechanismInfo`, `C_DecryptInit`,
//!   `C_SignInit` and `C_DeriveKey` with it answer `CKR_MECHANISM_INVALID`.
//! - `slow FUNCTION MS`: the first matching line wins.
//! - `log PATH`: relative to the plan's directory, no spaces. Each line is `C_Name CKR_RV`, with
//!   ` injected` appended when this module made the answer without calling the real one, and
//!   `# …` lines for ignored plan lines (each once per process). Never a PIN or a data buffer.
//!
//! # `removed`
//!
//! What OpenSC does when a card is pulled out: an operation on an open session gets
//! `SC_ERROR_CARD_REMOVED` from the reader, mapped to `CKR_DEVICE_REMOVED`; once the module
//! notices (it re-scans the reader in `C_GetSlotList` and `C_GetSlotInfo`), it closes every
//! session of the slot, and from then on the old handles are `CKR_SESSION_HANDLE_INVALID`,
//! even after the card is back. This module does the same:
//!
//! - `C_GetSlotList(tokenPresent=TRUE)` lists no slot; with `FALSE` the slots (readers) stay.
//!   `C_GetSlotInfo` clears `CKF_TOKEN_PRESENT`.
//! - `C_GetTokenInfo`, `C_OpenSession`, `C_GetMechanismList` and `C_GetMechanismInfo` answer
//!   `CKR_TOKEN_NOT_PRESENT` (OpenSC may still serve `C_GetTokenInfo` from its cache until it
//!   re-scans; that is not modelled).
//! - Session calls answer `CKR_DEVICE_REMOVED` until one of the calls above is made (the module
//!   "notices"); that call closes every real session (`C_CloseAllSessions` on every slot, which also logs out),
//!   and later session calls reach the real module, which answers `CKR_SESSION_HANDLE_INVALID`.
//!   `C_CloseSession` always reaches the real module.
//! - Take `removed` out of the plan and the token is back: new sessions work, old ones stay
//!   closed.
//!
//! `removed` is checked before `fail` lines; `fail` before `no-mechanism`.
//!
//! # Intercepted functions
//!
//! `C_Initialize`, `C_Finalize`, `C_GetSlotList`, `C_GetSlotInfo`, `C_GetTokenInfo`,
//! `C_GetMechanismList`, `C_GetMechanismInfo`, `C_OpenSession`, `C_CloseSession`,
//! `C_GetSessionInfo`, `C_Login`, `C_Logout`, `C_FindObjectsInit`, `C_FindObjects`,
//! `C_FindObjectsFinal`, `C_GetAttributeValue`, `C_DestroyObject`, `C_DecryptInit`,
//! `C_Decrypt`, `C_SignInit`, `C_Sign`, `C_SignUpdate`, `C_SignFinal`, `C_DeriveKey`. Every
//! other entry is the real module's pointer. Only the PKCS#11 2.40 `C_GetFunctionList` is
//! exported (no `C_GetInterface`), so callers use the 2.40 list.

mod names;
mod plan;

use cryptoki_sys::*;
use names::Func;
use plan::Plan;
use std::collections::HashSet;
use std::ffi::c_void;
use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// The real module, loaded once and never unloaded (its pointers live in our function list).
struct Real {
    _lib: libloading::Library,
    list: CK_FUNCTION_LIST,
}

static REAL: OnceLock<Result<Real, String>> = OnceLock::new();
/// The list we hand out; a static so the pointer stays valid for the life of the process.
static WRAPPED: OnceLock<CK_FUNCTION_LIST> = OnceLock::new();
/// Calls per intercepted function in this process, for `after=N`.
static CALLS: [AtomicU64; Func::ALL.len()] = [const { AtomicU64::new(0) }; Func::ALL.len()];
/// True once a slot call has "noticed" the removal and closed the real sessions.
static REMOVAL_NOTICED: AtomicBool = AtomicBool::new(false);
/// Ignored plan lines already reported, so the log says each once, not on every call.
static REPORTED: Mutex<Option<HashSet<String>>> = Mutex::new(None);

fn real() -> Result<&'static Real, &'static str> {
    REAL.get_or_init(load_real).as_ref().map_err(|e| e.as_str())
}

fn load_real() -> Result<Real, String> {
    let path = std::env::var_os("P11FAULT_MODULE")
        .ok_or("P11FAULT_MODULE is not set: name the real PKCS#11 module to wrap")?;
    let shown = Path::new(&path).display().to_string();
    // SAFETY: loading a PKCS#11 module runs its initialisers; that is what we are here for.
    let lib = unsafe { libloading::Library::new(&path) }
        .map_err(|e| format!("cannot load {shown}: {e}"))?;
    // SAFETY: the symbol has this type in every PKCS#11 module.
    let get = unsafe {
        lib.get::<unsafe extern "C" fn(*mut *mut CK_FUNCTION_LIST) -> CK_RV>(b"C_GetFunctionList\0")
    }
    .map_err(|e| format!("{shown} has no C_GetFunctionList: {e}"))?;
    // Wrapping ourselves would recurse into this very initialisation.
    if *get as *const () == C_GetFunctionList as *const () {
        return Err("P11FAULT_MODULE names the fault module itself".into());
    }
    let mut list: *mut CK_FUNCTION_LIST = null_mut();
    // SAFETY: a valid out-pointer; the module fills it with its static list.
    let rv = unsafe { get(&mut list) };
    if rv != CKR_OK || list.is_null() {
        return Err(format!(
            "C_GetFunctionList of {shown} failed: {}",
            names::rv_name(rv)
        ));
    }
    // SAFETY: non-null and pointing at the module's function list, which we copy.
    let list = unsafe { *list };
    Ok(Real { _lib: lib, list })
}

/// Our function list: the real one with the intercepted entries replaced.
fn wrapped() -> Result<&'static CK_FUNCTION_LIST, &'static str> {
    let real = real()?;
    Ok(WRAPPED.get_or_init(|| {
        let mut l = real.list;
        l.C_GetFunctionList = Some(C_GetFunctionList);
        l.C_Initialize = Some(initialize);
        l.C_Finalize = Some(finalize);
        l.C_GetSlotList = Some(get_slot_list);
        l.C_GetSlotInfo = Some(get_slot_info);
        l.C_GetTokenInfo = Some(get_token_info);
        l.C_GetMechanismList = Some(get_mechanism_list);
        l.C_GetMechanismInfo = Some(get_mechanism_info);
        l.C_OpenSession = Some(open_session);
        l.C_CloseSession = Some(close_session);
        l.C_GetSessionInfo = Some(get_session_info);
        l.C_Login = Some(login);
        l.C_Logout = Some(logout);
        l.C_FindObjectsInit = Some(find_objects_init);
        l.C_FindObjects = Some(find_objects);
        l.C_FindObjectsFinal = Some(find_objects_final);
        l.C_GetAttributeValue = Some(get_attribute_value);
        l.C_DestroyObject = Some(destroy_object);
        l.C_DecryptInit = Some(decrypt_init);
        l.C_Decrypt = Some(decrypt);
        l.C_SignInit = Some(sign_init);
        l.C_Sign = Some(sign);
        l.C_SignUpdate = Some(sign_update);
        l.C_SignFinal = Some(sign_final);
        l.C_DeriveKey = Some(derive_key);
        l
    }))
}

/// The module's one export. Loads the real module named by `P11FAULT_MODULE` on first use.
///
/// # Safety
///
/// `list` must be null or valid for a write of one pointer, as PKCS#11 requires.
#[unsafe(no_mangle)]
#[allow(non_snake_case)]
pub unsafe extern "C" fn C_GetFunctionList(list: *mut *mut CK_FUNCTION_LIST) -> CK_RV {
    catch_unwind(|| {
        if list.is_null() {
            return CKR_ARGUMENTS_BAD;
        }
        match wrapped() {
            Ok(ours) => {
                // SAFETY: checked non-null; callers only read through the pointer.
                unsafe { *list = ours as *const CK_FUNCTION_LIST as *mut CK_FUNCTION_LIST };
                CKR_OK
            }
            Err(e) => {
                // The caller sees only CKR_GENERAL_ERROR: say why where a test run shows it.
                eprintln!("pkcs11-fault: {e}");
                CKR_GENERAL_ERROR
            }
        }
    })
    .unwrap_or(CKR_GENERAL_ERROR)
}

/// Who answered a call.
enum Outcome {
    /// The real module's answer (possibly adjusted, e.g. flags added).
    Forwarded(CK_RV),
    /// This module's answer; the call was not passed on.
    Injected(CK_RV),
}
use Outcome::{Forwarded, Injected};

/// How `removed` affects a function.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Not by itself (module calls, slot-list calls that handle `removed` in their body).
    Module,
    /// A call about the token in a slot: `CKR_TOKEN_NOT_PRESENT`.
    Token,
    /// A call on an open session: `CKR_DEVICE_REMOVED`, then the real module's answer.
    Session,
}

/// Calls the real function `$f` of list `$l`, or answers `CKR_FUNCTION_NOT_SUPPORTED`.
macro_rules! forward {
    ($l:ident . $f:ident ( $($a:expr),* $(,)? )) => {
        match $l.$f {
            // SAFETY: the caller's arguments, passed on unchanged to the function they were for.
            Some(f) => Forwarded(unsafe { f($($a),*) }),
            None => Injected(CKR_FUNCTION_NOT_SUPPORTED),
        }
    };
}

/// The common path of every interceptor: count the call, read the plan, wait, apply `removed`,
/// `fail` and `no-mechanism`, else run `body` (which forwards), then log. Never unwinds into C.
fn intercept(
    func: Func,
    scope: Scope,
    mechanism: Option<CK_MECHANISM_TYPE>,
    body: impl FnOnce(&Plan, &CK_FUNCTION_LIST) -> Outcome,
) -> CK_RV {
    intercept_op(func, scope, mechanism, body, |_| {})
}

/// [`intercept`] for a call that continues an operation (`C_Decrypt`, `C_Sign`, ...). By the
/// specification every error but `CKR_BUFFER_TOO_SMALL` ends the operation; an injected one
/// never reached the real module, which would still have it active and answer the caller's
/// next call with `CKR_OPERATION_ACTIVE`, a fault no real token makes. So `end` finishes the
/// real operation (into a scratch buffer, wiped) whenever this module answers with an error.
fn intercept_op(
    func: Func,
    scope: Scope,
    mechanism: Option<CK_MECHANISM_TYPE>,
    body: impl FnOnce(&Plan, &CK_FUNCTION_LIST) -> Outcome,
    end: impl FnOnce(&CK_FUNCTION_LIST),
) -> CK_RV {
    catch_unwind(AssertUnwindSafe(|| {
        let call = CALLS[func as usize].fetch_add(1, Ordering::Relaxed) + 1;
        let mut plan = load_plan();
        if let Some(d) = plan.delay(func) {
            std::thread::sleep(d);
            // What the test changed while we slept applies to this very call.
            plan = load_plan();
        }
        let outcome = match real() {
            Ok(real) => {
                let outcome = decide(func, scope, mechanism, call, &plan, &real.list, body);
                if let Injected(rv) = outcome
                    && rv != CKR_OK
                    && rv != CKR_BUFFER_TOO_SMALL
                {
                    end(&real.list);
                }
                outcome
            }
            Err(_) => Injected(CKR_GENERAL_ERROR),
        };
        let (rv, how) = match outcome {
            Forwarded(rv) => (rv, ""),
            Injected(rv) => (rv, " injected"),
        };
        log(
            &plan,
            &format!("{} {}{how}", func.name(), names::rv_name(rv)),
        );
        rv
    }))
    .unwrap_or(CKR_GENERAL_ERROR)
}

fn decide(
    func: Func,
    scope: Scope,
    mechanism: Option<CK_MECHANISM_TYPE>,
    call: u64,
    plan: &Plan,
    real: &CK_FUNCTION_LIST,
    body: impl FnOnce(&Plan, &CK_FUNCTION_LIST) -> Outcome,
) -> Outcome {
    if plan.removed {
        match scope {
            Scope::Token => {
                notice_removal(real);
                return Injected(CKR_TOKEN_NOT_PRESENT);
            }
            Scope::Session if !REMOVAL_NOTICED.load(Ordering::SeqCst) => {
                return Injected(CKR_DEVICE_REMOVED);
            }
            _ => {}
        }
    } else {
        REMOVAL_NOTICED.store(false, Ordering::SeqCst);
    }
    if let Some(rv) = plan.failure(func, call) {
        return Injected(rv);
    }
    if let Some(rv) = mechanism.and_then(|m| plan.refuses(m)) {
        return Injected(rv);
    }
    body(plan, real)
}

/// The module notices the card is gone: every real session is closed, as OpenSC does.
fn notice_removal(real: &CK_FUNCTION_LIST) {
    if REMOVAL_NOTICED.swap(true, Ordering::SeqCst) {
        return;
    }
    let (Some(list), Some(close_all)) = (real.C_GetSlotList, real.C_CloseAllSessions) else {
        return;
    };
    let mut n: CK_ULONG = 0;
    // SAFETY: a count query, then a buffer of that many slots.
    unsafe {
        if list(CK_FALSE, null_mut(), &mut n) != CKR_OK {
            return;
        }
        let mut slots = vec![0 as CK_SLOT_ID; n as usize];
        if list(CK_FALSE, slots.as_mut_ptr(), &mut n) != CKR_OK {
            return;
        }
        for slot in slots.iter().take(n as usize) {
            close_all(*slot);
        }
    }
}

/// The plan named by `P11FAULT_CONFIG`, read now. Its ignored lines go to its log, once each.
fn load_plan() -> Plan {
    let Some(path) = std::env::var_os("P11FAULT_CONFIG") else {
        return Plan::default();
    };
    let path = Path::new(&path);
    let Ok(bytes) = std::fs::read(path) else {
        return Plan::default();
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let plan = Plan::parse(&String::from_utf8_lossy(&bytes), base);
    if !plan.errors.is_empty() {
        let fresh: Vec<String> = match REPORTED.lock() {
            Ok(mut seen) => {
                let seen = seen.get_or_insert_with(HashSet::new);
                plan.errors
                    .iter()
                    .filter(|e| seen.insert((*e).clone()))
                    .cloned()
                    .collect()
            }
            Err(_) => Vec::new(),
        };
        for e in fresh {
            log(&plan, &format!("# {e}"));
        }
    }
    plan
}

/// Appends `line` to the plan's log, in one write so concurrent processes do not interleave.
fn log(plan: &Plan, line: &str) {
    let Some(path) = &plan.log else { return };
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = f.write_all(format!("{line}\n").as_bytes());
    }
}

/// The mechanism type behind a `CK_MECHANISM_PTR`, when there is one.
fn mechanism_type(m: *const CK_MECHANISM) -> Option<CK_MECHANISM_TYPE> {
    // SAFETY: the caller's mechanism pointer, read only when non-null.
    (!m.is_null()).then(|| unsafe { (*m).mechanism })
}

/// Runs `call` (an operation's final step: output pointer and length in, rv out) to the end
/// into a scratch buffer, then wipes it: the size query first, then the real call. Either
/// ends the operation, whatever it answers.
fn finish(call: impl Fn(*mut CK_BYTE, *mut CK_ULONG) -> CK_RV) {
    let mut n: CK_ULONG = 0;
    if call(null_mut(), &mut n) != CKR_OK {
        return;
    }
    let mut scratch = vec![0 as CK_BYTE; n as usize];
    call(scratch.as_mut_ptr(), &mut n);
    for b in scratch.iter_mut() {
        // SAFETY: a valid byte of our own buffer; volatile so the wipe is not optimised away.
        unsafe { std::ptr::write_volatile(b, 0) };
    }
}

unsafe extern "C" fn initialize(args: *mut c_void) -> CK_RV {
    intercept(Func::Initialize, Scope::Module, None, |_, l| {
        forward!(l.C_Initialize(args))
    })
}

unsafe extern "C" fn finalize(reserved: *mut c_void) -> CK_RV {
    intercept(Func::Finalize, Scope::Module, None, |_, l| {
        forward!(l.C_Finalize(reserved))
    })
}

unsafe extern "C" fn get_slot_list(
    present: CK_BBOOL,
    slots: *mut CK_SLOT_ID,
    count: *mut CK_ULONG,
) -> CK_RV {
    intercept(Func::GetSlotList, Scope::Module, None, |plan, l| {
        if plan.removed {
            notice_removal(l);
            if present != CK_FALSE {
                if count.is_null() {
                    return Injected(CKR_ARGUMENTS_BAD);
                }
                // SAFETY: checked non-null; no slot has a token, so nothing goes in `slots`.
                unsafe { *count = 0 };
                return Injected(CKR_OK);
            }
        }
        forward!(l.C_GetSlotList(present, slots, count))
    })
}

unsafe extern "C" fn get_slot_info(slot: CK_SLOT_ID, info: *mut CK_SLOT_INFO) -> CK_RV {
    intercept(Func::GetSlotInfo, Scope::Module, None, |plan, l| {
        if plan.removed {
            notice_removal(l);
        }
        let out = forward!(l.C_GetSlotInfo(slot, info));
        if plan.removed && matches!(out, Forwarded(CKR_OK)) && !info.is_null() {
            // SAFETY: the real module just filled this structure.
            unsafe { (*info).flags &= !CKF_TOKEN_PRESENT };
        }
        out
    })
}

unsafe extern "C" fn get_token_info(slot: CK_SLOT_ID, info: *mut CK_TOKEN_INFO) -> CK_RV {
    intercept(Func::GetTokenInfo, Scope::Token, None, |plan, l| {
        let out = forward!(l.C_GetTokenInfo(slot, info));
        if matches!(out, Forwarded(CKR_OK)) && !info.is_null() {
            // SAFETY: the real module just filled this structure.
            unsafe { (*info).flags |= plan.flags };
        }
        out
    })
}

unsafe extern "C" fn get_mechanism_list(
    slot: CK_SLOT_ID,
    list: *mut CK_MECHANISM_TYPE,
    count: *mut CK_ULONG,
) -> CK_RV {
    intercept(Func::GetMechanismList, Scope::Token, None, |plan, l| {
        if plan.hidden.is_empty() {
            return forward!(l.C_GetMechanismList(slot, list, count));
        }
        let Some(get) = l.C_GetMechanismList else {
            return Injected(CKR_FUNCTION_NOT_SUPPORTED);
        };
        if count.is_null() {
            return Injected(CKR_ARGUMENTS_BAD);
        }
        // The whole real list, filtered, answered with the usual two-call protocol.
        let mut n: CK_ULONG = 0;
        // SAFETY: a count query, then a buffer of that many entries.
        let rv = unsafe { get(slot, null_mut(), &mut n) };
        if rv != CKR_OK {
            return Forwarded(rv);
        }
        let mut all = vec![0 as CK_MECHANISM_TYPE; n as usize];
        // SAFETY: as above.
        let rv = unsafe { get(slot, all.as_mut_ptr(), &mut n) };
        if rv != CKR_OK {
            return Forwarded(rv);
        }
        all.truncate(n as usize);
        all.retain(|m| plan.refuses(*m).is_none());
        let want = all.len() as CK_ULONG;
        // SAFETY: `count` checked non-null; `list`, when given, holds `*count` entries.
        unsafe {
            if list.is_null() {
                *count = want;
                return Forwarded(CKR_OK);
            }
            if *count < want {
                *count = want;
                return Forwarded(CKR_BUFFER_TOO_SMALL);
            }
            std::ptr::copy_nonoverlapping(all.as_ptr(), list, all.len());
            *count = want;
        }
        Forwarded(CKR_OK)
    })
}

unsafe extern "C" fn get_mechanism_info(
    slot: CK_SLOT_ID,
    mechanism: CK_MECHANISM_TYPE,
    info: *mut CK_MECHANISM_INFO,
) -> CK_RV {
    intercept(
        Func::GetMechanismInfo,
        Scope::Token,
        Some(mechanism),
        |_, l| forward!(l.C_GetMechanismInfo(slot, mechanism, info)),
    )
}

unsafe extern "C" fn open_session(
    slot: CK_SLOT_ID,
    flags: CK_FLAGS,
    app: *mut c_void,
    notify: CK_NOTIFY,
    session: *mut CK_SESSION_HANDLE,
) -> CK_RV {
    intercept(Func::OpenSession, Scope::Token, None, |_, l| {
        forward!(l.C_OpenSession(slot, flags, app, notify, session))
    })
}

unsafe extern "C" fn close_session(session: CK_SESSION_HANDLE) -> CK_RV {
    // OpenSC closes a session without asking the card: not affected by `removed`.
    intercept(Func::CloseSession, Scope::Module, None, |_, l| {
        forward!(l.C_CloseSession(session))
    })
}

unsafe extern "C" fn get_session_info(
    session: CK_SESSION_HANDLE,
    info: *mut CK_SESSION_INFO,
) -> CK_RV {
    intercept(Func::GetSessionInfo, Scope::Session, None, |_, l| {
        forward!(l.C_GetSessionInfo(session, info))
    })
}

unsafe extern "C" fn login(
    session: CK_SESSION_HANDLE,
    user: CK_USER_TYPE,
    pin: *mut CK_UTF8CHAR,
    pin_len: CK_ULONG,
) -> CK_RV {
    intercept(Func::Login, Scope::Session, None, |plan, l| {
        if plan.flags & CKF_USER_PIN_LOCKED != 0 && user != CKU_SO {
            return Injected(CKR_PIN_LOCKED);
        }
        forward!(l.C_Login(session, user, pin, pin_len))
    })
}

unsafe extern "C" fn logout(session: CK_SESSION_HANDLE) -> CK_RV {
    intercept(Func::Logout, Scope::Session, None, |_, l| {
        forward!(l.C_Logout(session))
    })
}

unsafe extern "C" fn find_objects_init(
    session: CK_SESSION_HANDLE,
    template: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
) -> CK_RV {
    intercept(Func::FindObjectsInit, Scope::Session, None, |_, l| {
        forward!(l.C_FindObjectsInit(session, template, count))
    })
}

unsafe extern "C" fn find_objects(
    session: CK_SESSION_HANDLE,
    objects: *mut CK_OBJECT_HANDLE,
    max: CK_ULONG,
    count: *mut CK_ULONG,
) -> CK_RV {
    intercept(Func::FindObjects, Scope::Session, None, |_, l| {
        forward!(l.C_FindObjects(session, objects, max, count))
    })
}

unsafe extern "C" fn find_objects_final(session: CK_SESSION_HANDLE) -> CK_RV {
    intercept(Func::FindObjectsFinal, Scope::Session, None, |_, l| {
        forward!(l.C_FindObjectsFinal(session))
    })
}

unsafe extern "C" fn get_attribute_value(
    session: CK_SESSION_HANDLE,
    object: CK_OBJECT_HANDLE,
    template: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
) -> CK_RV {
    intercept(Func::GetAttributeValue, Scope::Session, None, |_, l| {
        forward!(l.C_GetAttributeValue(session, object, template, count))
    })
}

unsafe extern "C" fn destroy_object(session: CK_SESSION_HANDLE, object: CK_OBJECT_HANDLE) -> CK_RV {
    intercept(Func::DestroyObject, Scope::Session, None, |_, l| {
        forward!(l.C_DestroyObject(session, object))
    })
}

unsafe extern "C" fn decrypt_init(
    session: CK_SESSION_HANDLE,
    mechanism: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    intercept(
        Func::DecryptInit,
        Scope::Session,
        mechanism_type(mechanism),
        |_, l| forward!(l.C_DecryptInit(session, mechanism, key)),
    )
}

unsafe extern "C" fn decrypt(
    session: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    len: CK_ULONG,
    out: *mut CK_BYTE,
    out_len: *mut CK_ULONG,
) -> CK_RV {
    intercept_op(
        Func::Decrypt,
        Scope::Session,
        None,
        |_, l| forward!(l.C_Decrypt(session, data, len, out, out_len)),
        |l| {
            if let Some(f) = l.C_Decrypt {
                // SAFETY: the caller's input, still valid during this call.
                finish(|o, n| unsafe { f(session, data, len, o, n) });
            }
        },
    )
}

unsafe extern "C" fn sign_init(
    session: CK_SESSION_HANDLE,
    mechanism: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    intercept(
        Func::SignInit,
        Scope::Session,
        mechanism_type(mechanism),
        |_, l| forward!(l.C_SignInit(session, mechanism, key)),
    )
}

unsafe extern "C" fn sign(
    session: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    len: CK_ULONG,
    out: *mut CK_BYTE,
    out_len: *mut CK_ULONG,
) -> CK_RV {
    intercept_op(
        Func::Sign,
        Scope::Session,
        None,
        |_, l| forward!(l.C_Sign(session, data, len, out, out_len)),
        |l| {
            if let Some(f) = l.C_Sign {
                // SAFETY: the caller's input, still valid during this call.
                finish(|o, n| unsafe { f(session, data, len, o, n) });
            }
        },
    )
}

/// Ends a multi-part signature the caller can no longer finish (see [`intercept_op`]).
fn end_sign(l: &CK_FUNCTION_LIST, session: CK_SESSION_HANDLE) {
    if let Some(f) = l.C_SignFinal {
        // SAFETY: our own scratch output, on the caller's session.
        finish(|o, n| unsafe { f(session, o, n) });
    }
}

unsafe extern "C" fn sign_update(
    session: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    len: CK_ULONG,
) -> CK_RV {
    intercept_op(
        Func::SignUpdate,
        Scope::Session,
        None,
        |_, l| forward!(l.C_SignUpdate(session, data, len)),
        |l| end_sign(l, session),
    )
}

unsafe extern "C" fn sign_final(
    session: CK_SESSION_HANDLE,
    out: *mut CK_BYTE,
    out_len: *mut CK_ULONG,
) -> CK_RV {
    intercept_op(
        Func::SignFinal,
        Scope::Session,
        None,
        |_, l| forward!(l.C_SignFinal(session, out, out_len)),
        |l| end_sign(l, session),
    )
}

unsafe extern "C" fn derive_key(
    session: CK_SESSION_HANDLE,
    mechanism: *mut CK_MECHANISM,
    base: CK_OBJECT_HANDLE,
    template: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
    key: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    intercept(
        Func::DeriveKey,
        Scope::Session,
        mechanism_type(mechanism),
        |_, l| forward!(l.C_DeriveKey(session, mechanism, base, template, count, key)),
    )
}

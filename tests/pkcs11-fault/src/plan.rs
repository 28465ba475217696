//! The fault plan: parsing the plan file into what the interceptors consult. Pure, so it is
//! unit-tested without loading any module; the syntax is documented in the crate doc.

use crate::names::{self, Func};
use cryptoki_sys::{
    CK_FLAGS, CK_MECHANISM_TYPE, CK_RV, CKF_PROTECTED_AUTHENTICATION_PATH, CKF_USER_PIN_COUNT_LOW,
    CKF_USER_PIN_FINAL_TRY, CKF_USER_PIN_LOCKED, CKF_USER_PIN_TO_BE_CHANGED, CKR_MECHANISM_INVALID,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Token flags a plan can add, by short name; the `CKF_*` names work too.
const FLAGS: &[(&str, &str, CK_FLAGS)] = &[
    (
        "COUNT_LOW",
        "CKF_USER_PIN_COUNT_LOW",
        CKF_USER_PIN_COUNT_LOW,
    ),
    (
        "FINAL_TRY",
        "CKF_USER_PIN_FINAL_TRY",
        CKF_USER_PIN_FINAL_TRY,
    ),
    ("LOCKED", "CKF_USER_PIN_LOCKED", CKF_USER_PIN_LOCKED),
    (
        "PROTECTED_AUTH_PATH",
        "CKF_PROTECTED_AUTHENTICATION_PATH",
        CKF_PROTECTED_AUTHENTICATION_PATH,
    ),
    (
        "TO_BE_CHANGED",
        "CKF_USER_PIN_TO_BE_CHANGED",
        CKF_USER_PIN_TO_BE_CHANGED,
    ),
];

/// One `fail` (or `login`) line: answer `rv` from `func` once more than `after` calls were made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub func: Func,
    pub rv: CK_RV,
    pub after: u64,
}

/// What the plan file asks for. The default (no file, empty file) changes nothing.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The token is out of its reader.
    pub removed: bool,
    /// Flags OR-ed into `CK_TOKEN_INFO.flags`.
    pub flags: CK_FLAGS,
    pub failures: Vec<Failure>,
    /// Mechanisms the token pretends not to have.
    pub hidden: Vec<CK_MECHANISM_TYPE>,
    pub delays: Vec<(Func, Duration)>,
    pub log: Option<PathBuf>,
    /// One message per line that was ignored, with its line number.
    pub errors: Vec<String>,
}

impl Plan {
    /// Parses `text`; a relative `log` path is taken from `base` (the plan's directory). Bad
    /// lines are skipped and described in `errors`: a typo must not stop the module.
    pub fn parse(text: &str, base: &Path) -> Plan {
        let mut plan = Plan::default();
        for (i, line) in text.lines().enumerate() {
            let words: Vec<&str> = line
                .split_whitespace()
                .take_while(|w| !w.starts_with('#'))
                .collect();
            if words.is_empty() {
                continue;
            }
            if let Err(why) = plan.apply(&words, base) {
                plan.errors.push(format!(
                    "plan line {} ignored ({why}): {}",
                    i + 1,
                    line.trim()
                ));
            }
        }
        plan
    }

    fn apply(&mut self, words: &[&str], base: &Path) -> Result<(), String> {
        match words {
            ["fail", func, rv, rest @ ..] => {
                let func = function(func)?;
                let failure = failure(func, rv, rest)?;
                self.failures.push(failure);
            }
            ["login", rv, rest @ ..] => {
                let failure = failure(Func::Login, rv, rest)?;
                self.failures.push(failure);
            }
            ["removed"] => self.removed = true,
            ["flags", names @ ..] if !names.is_empty() => {
                let mut flags = 0;
                for name in names {
                    flags |= FLAGS
                        .iter()
                        .find(|(short, long, _)| name == short || name == long)
                        .map(|(_, _, f)| *f)
                        .ok_or_else(|| format!("unknown flag {name}"))?;
                }
                self.flags |= flags;
            }
            ["no-mechanism", names @ ..] if !names.is_empty() => {
                for name in names {
                    let m = names::value(names::MECHANISMS, name)
                        .ok_or_else(|| format!("unknown mechanism {name}"))?;
                    self.hidden.push(m);
                }
            }
            ["slow", func, ms] => {
                let func = function(func)?;
                let ms: u64 = ms
                    .parse()
                    .map_err(|_| format!("not a number of milliseconds: {ms}"))?;
                self.delays.push((func, Duration::from_millis(ms)));
            }
            ["log", path] => self.log = Some(base.join(path)),
            [keyword, ..] => return Err(format!("unknown or incomplete `{keyword}`")),
            [] => {}
        }
        Ok(())
    }

    /// The error `func` must answer on its `call`-th call (1-based, per process), if any. The
    /// first matching line wins.
    pub fn failure(&self, func: Func, call: u64) -> Option<CK_RV> {
        self.failures
            .iter()
            .find(|f| f.func == func && call > f.after)
            .map(|f| f.rv)
    }

    /// How long `func` waits before it answers.
    pub fn delay(&self, func: Func) -> Option<Duration> {
        self.delays
            .iter()
            .find(|(f, _)| *f == func)
            .map(|(_, d)| *d)
    }

    /// `CKR_MECHANISM_INVALID` when `mechanism` is hidden.
    pub fn refuses(&self, mechanism: CK_MECHANISM_TYPE) -> Option<CK_RV> {
        self.hidden
            .contains(&mechanism)
            .then_some(CKR_MECHANISM_INVALID)
    }
}

fn function(name: &str) -> Result<Func, String> {
    Func::from_name(name).ok_or_else(|| format!("{name} is not an intercepted function"))
}

fn failure(func: Func, rv: &str, rest: &[&str]) -> Result<Failure, String> {
    let rv = names::value(names::RETURN_VALUES, rv)
        .ok_or_else(|| format!("unknown return value {rv}"))?;
    let after = match rest {
        [] => 0,
        [a] => a
            .strip_prefix("after=")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("expected after=N, got {a}"))?,
        _ => return Err("too many words".into()),
    };
    Ok(Failure { func, rv, after })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptoki_sys::{CKM_RSA_PKCS_OAEP, CKR_DEVICE_REMOVED, CKR_PIN_INCORRECT};

    #[test]
    fn every_keyword() {
        let text = "\
# a comment
fail C_Decrypt CKR_DEVICE_REMOVED after=3   # trailing comment
login CKR_PIN_INCORRECT
removed
flags COUNT_LOW CKF_USER_PIN_FINAL_TRY
no-mechanism CKM_RSA_PKCS_OAEP 0x1234
slow C_Sign 200
log calls.log
";
        let plan = Plan::parse(text, Path::new("/tmp/plan"));
        assert_eq!(plan.errors, Vec::<String>::new());
        assert!(plan.removed);
        assert_eq!(plan.flags, CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY);
        assert_eq!(plan.failure(Func::Decrypt, 3), None);
        assert_eq!(plan.failure(Func::Decrypt, 4), Some(CKR_DEVICE_REMOVED));
        assert_eq!(plan.failure(Func::Login, 1), Some(CKR_PIN_INCORRECT));
        assert_eq!(plan.failure(Func::Sign, 1), None);
        assert_eq!(plan.hidden, vec![CKM_RSA_PKCS_OAEP, 0x1234]);
        assert_eq!(plan.refuses(CKM_RSA_PKCS_OAEP), Some(CKR_MECHANISM_INVALID));
        assert_eq!(plan.delay(Func::Sign), Some(Duration::from_millis(200)));
        assert_eq!(plan.delay(Func::Decrypt), None);
        assert_eq!(plan.log, Some(PathBuf::from("/tmp/plan/calls.log")));
    }

    #[test]
    fn bad_lines_are_skipped_and_reported() {
        let text = "\
fail C_Encrypt CKR_GENERAL_ERROR
fail C_Decrypt CKR_NOPE
fail C_Decrypt CKR_GENERAL_ERROR after=x
flags SHINY
slow C_Decrypt soon
removed now
frobnicate
fail C_Sign CKR_GENERAL_ERROR
";
        let plan = Plan::parse(text, Path::new("/"));
        assert_eq!(plan.errors.len(), 7, "{:?}", plan.errors);
        assert!(plan.errors[0].starts_with("plan line 1 ignored"));
        assert!(!plan.removed);
        assert_eq!(plan.failures.len(), 1);
        assert_eq!(plan.failure(Func::Sign, 1), Some(0x5));
    }

    #[test]
    fn empty_plan_changes_nothing() {
        assert_eq!(Plan::parse("", Path::new("/")), Plan::default());
        assert_eq!(
            Plan::parse("\n  # only\n\n", Path::new("/")),
            Plan::default()
        );
    }
}

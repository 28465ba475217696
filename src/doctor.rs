//! `doctor`: the chain from module to certificates walked step by step, each step ok, a
//! warning, or a problem with the fix. No PIN is used unless one is given (and then exactly one
//! login is tried). The library only collects the verdicts; the binary prints them.

use crate::certinfo::{self, is_ca, is_encryption_cert, is_signing_cert};
use crate::error::Error;
use crate::keyops::KeyCertificate;
use crate::pin::PinSource;
use crate::readers;
use crate::token::{LoginOptions, Module, TokenSelector};
use crate::trust::TrustStore;
use std::path::Path;

/// How a step went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Ok,
    Warning,
    Problem,
    /// Not checked (it does not apply, or an earlier step failed).
    Skipped,
}

/// One step.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    pub step: String,
    pub status: Status,
    pub detail: String,
    /// What to do, for a warning or a problem.
    pub fix: Option<String>,
}

fn check(step: &str, status: Status, detail: impl Into<String>, fix: Option<&str>) -> Check {
    Check {
        step: step.into(),
        status,
        detail: detail.into(),
        fix: fix.map(str::to_string),
    }
}

/// What to examine.
pub struct DoctorOptions<'a> {
    pub module: Option<&'a Path>,
    pub token: Option<&'a TokenSelector>,
    /// Try one login with this PIN source; `None` tests no PIN.
    pub pin: Option<&'a PinSource>,
    pub login: LoginOptions<'a>,
    pub trust: &'a TrustStore,
}

/// Walks every step; later steps are skipped when an earlier one makes them meaningless.
pub fn run(options: &DoctorOptions<'_>) -> Vec<Check> {
    let mut checks = Vec::new();
    let module = match Module::open(options.module) {
        Ok(m) => {
            checks.push(check(
                "PKCS#11 module",
                Status::Ok,
                format!("{} loaded", m.path().display()),
                None,
            ));
            m
        }
        Err(e) => {
            checks.push(check(
                "PKCS#11 module",
                Status::Problem,
                e.to_string(),
                Some("install OpenSC (Debian/Ubuntu: sudo apt-get install opensc-pkcs11; macOS: brew install opensc) or name the module with --module PATH"),
            ));
            return checks;
        }
    };
    let software = module.path().to_string_lossy().contains("softhsm");
    checks.push(readers_check(software));

    let tokens = match module.candidate_tokens(options.token) {
        Ok(t) => t,
        Err(e) => {
            checks.push(check(
                "token",
                Status::Problem,
                e.to_string(),
                Some("insert the card (see the readers step), or choose the token with --token"),
            ));
            return checks;
        }
    };
    for info in tokens {
        let name = info.display_name();
        checks.push(check(
            "token",
            Status::Ok,
            format!("{name}, {} {}", info.manufacturer, info.model),
            None,
        ));
        checks.push(pin_check(
            &name,
            info.pin_locked,
            info.pin_final_try,
            info.pin_count_low,
            info.login_required,
            options.pin.is_some(),
        ));
        let mut token = match module.open_token(&info, options.login) {
            Ok(t) => t,
            Err(e) => {
                checks.push(check(
                    "session",
                    Status::Problem,
                    e.to_string(),
                    Some("`p11smime tokens` shows what the module sees"),
                ));
                continue;
            }
        };
        if options.pin.is_some() && !info.pin_locked {
            checks.push(match token.ensure_login() {
                Ok(()) => check("login", Status::Ok, format!("the PIN opens {name}"), None),
                Err(e) => {
                    let fix = match e {
                        crate::Error::FinalTryRefused => {
                            "no login was tried: give --force-final-try only if you are certain of the PIN"
                        }
                        _ => "check the PIN before trying again: a few wrong PINs lock the card",
                    };
                    check("login", Status::Problem, e.to_string(), Some(fix))
                }
            });
        }
        match token.read_certificates() {
            Ok(certs) => checks.extend(certificate_checks(&certs, options.trust)),
            Err(e) => checks.push(check("certificates", Status::Problem, e.to_string(), None)),
        }
    }
    checks
}

fn readers_check(software: bool) -> Check {
    match readers::list() {
        Ok(list) => {
            let with_card = list.iter().filter(|r| r.card_present).count();
            check(
                "readers",
                Status::Ok,
                format!("{} reader(s), {with_card} with a card", list.len()),
                None,
            )
        }
        // A software token needs no reader: say so without calling it a problem.
        Err(e) if software => check(
            "readers",
            Status::Skipped,
            format!("{e} (not needed for a software token)"),
            None,
        ),
        Err(e) => check(
            "readers",
            Status::Problem,
            e.to_string(),
            Some(
                if matches!(
                    e,
                    Error::Reader(crate::readers::ReaderError::NoService { .. })
                ) {
                    "start pcscd: sudo systemctl start pcscd.socket (install it with: sudo apt-get install pcscd); on macOS, plug the reader in"
                } else {
                    "plug the reader in and check it is seen (lsusb); install libccid, then restart pcscd"
                },
            ),
        ),
    }
}

fn pin_check(
    name: &str,
    locked: bool,
    final_try: bool,
    count_low: bool,
    login_required: bool,
    pin_given: bool,
) -> Check {
    if locked {
        return check(
            "PIN",
            Status::Problem,
            format!("the PIN of {name} is locked"),
            Some(
                "the card must be unblocked by its issuer (for a CAC: an ID card office) or with its PUK",
            ),
        );
    }
    if final_try {
        return check(
            "PIN",
            Status::Warning,
            format!("{name} is at its FINAL PIN try"),
            Some("a wrong PIN now locks the card: be certain of it"),
        );
    }
    if count_low {
        return check(
            "PIN",
            Status::Warning,
            format!("{name} reports a low PIN count (a wrong PIN was entered recently)"),
            Some("check the PIN before typing it"),
        );
    }
    let detail = match (login_required, pin_given) {
        (false, _) => "the token needs no login",
        (true, false) => "not locked; not tested (give --pin to try one login)",
        (true, true) => "not locked",
    };
    check("PIN", Status::Ok, detail, None)
}

fn certificate_checks(certs: &[KeyCertificate], trust: &TrustStore) -> Vec<Check> {
    let now = certinfo::now();
    let cas: Vec<x509_cert::Certificate> = certs
        .iter()
        .filter(|c| is_ca(&c.certificate))
        .map(|c| c.certificate.clone())
        .collect();
    let current = |c: &&KeyCertificate| {
        !certinfo::is_expired(&c.certificate, now) && c.has_private_key != Some(false)
    };
    let describe = |c: &KeyCertificate| {
        format!(
            "'{}' (id {}, {})",
            c.label,
            hex::encode(&c.id),
            c.certificate.tbs_certificate.subject
        )
    };
    let mut out = Vec::new();

    let signing: Vec<&KeyCertificate> = certs
        .iter()
        .filter(|c| is_signing_cert(&c.certificate))
        .filter(current)
        .collect();
    out.push(match signing.first() {
        Some(c) => check("signing certificate", Status::Ok, describe(c), None),
        None => check(
            "signing certificate",
            Status::Warning,
            "no current certificate for signing mail with its key on the token",
            Some("`p11smime sign` needs one; `p11smime certs` lists what the card holds"),
        ),
    });
    let mut encryption: Vec<&KeyCertificate> = certs
        .iter()
        .filter(|c| is_encryption_cert(&c.certificate))
        .filter(current)
        .collect();
    // RSA first: the key most correspondents can encrypt to.
    encryption.sort_by_key(|c| {
        c.certificate
            .tbs_certificate
            .subject_public_key_info
            .algorithm
            .oid
            != crate::cms::oids::RSA_ENCRYPTION
    });
    out.push(if encryption.is_empty() {
        check(
            "encryption certificate",
            Status::Problem,
            "no current certificate for encryption with its key on the token",
            Some(
                "mail to you cannot be opened with this card; `p11smime certs` lists what it holds",
            ),
        )
    } else {
        let all: Vec<String> = encryption.iter().map(|c| describe(c)).collect();
        check("encryption certificate", Status::Ok, all.join("; "), None)
    });
    let retired: Vec<String> = certs
        .iter()
        .filter(|c| certinfo::is_expired(&c.certificate, now))
        .map(describe)
        .collect();
    if !retired.is_empty() {
        out.push(check(
            "retired certificates",
            Status::Ok,
            format!(
                "{} expired, kept for old mail: {}",
                retired.len(),
                retired.join("; ")
            ),
            None,
        ));
    }
    for c in signing.iter().chain(encryption.iter()).take(2) {
        out.push(match trust.check_path(&c.certificate, &cas, now) {
            Ok(_) => check("chain", Status::Ok, format!("{} chains to a trusted authority", c.label), None),
            Err(why) => check(
                "chain",
                Status::Problem,
                format!("{}: {}", c.label, why.replace("the signer's certificate", "the certificate")), Some("give your CA certificates with --ca FILE (PEM, DER or the .p7b bundle your PKI publishes)")),
        });
    }
    out
}

/// True when no step has a problem (warnings are fine).
pub fn all_ok(checks: &[Check]) -> bool {
    !checks.iter().any(|c| c.status == Status::Problem)
}

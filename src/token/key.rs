//! A token as a [`KeyBackend`]: certificates without a PIN, private-key operations after one
//! login, performed lazily on the first operation that needs it.

use super::login::{self, pkcs11_error};
use super::{TokenInfo, objects};
use crate::error::{Error, PinFlags, Result};
use crate::keyops::{HashAlg, KeyBackend, KeyCertificate, KeyError, RsaPadding, SignAlg};
use crate::pin::{Callbacks, PinSource};
use cryptoki::context::Pkcs11;
use cryptoki::error::RvError;
use cryptoki::mechanism::elliptic_curve::{EcKdf, Ecdh1DeriveParams};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::Ulong;
use secrecy::SecretString;
use zeroize::Zeroizing;

/// How to log in when a private-key operation first needs it.
#[derive(Clone, Copy)]
pub struct LoginOptions<'c> {
    pub pin: Option<&'c PinSource>,
    pub force_final_try: bool,
    pub callbacks: &'c dyn Callbacks,
}

/// An open session on one token.
pub struct Token<'c> {
    ctx: Pkcs11,
    slot: Slot,
    session: Session,
    info: TokenInfo,
    options: LoginOptions<'c>,
    logged_in: bool,
    /// Kept for context-specific logins (CKA_ALWAYS_AUTHENTICATE keys) within this run, so the
    /// PIN is read once; zeroized on drop.
    pin: Option<SecretString>,
    /// Private-key handles found so far, by CKA_ID: a batch searches once per key, not once
    /// per message (SoftHSM2 reads its token files again on every search).
    key_handles: Vec<(Vec<u8>, ObjectHandle)>,
}

impl<'c> Token<'c> {
    pub(super) fn open(ctx: &Pkcs11, info: TokenInfo, options: LoginOptions<'c>) -> Result<Self> {
        let slot = Slot::try_from(info.slot_id).map_err(|_| Error::Token("bad slot id".into()))?;
        let session = ctx.open_ro_session(slot).map_err(|e| pkcs11_error(&e))?;
        Ok(Token {
            ctx: ctx.clone(),
            slot,
            session,
            info,
            options,
            logged_in: false,
            pin: None,
            key_handles: Vec::new(),
        })
    }

    /// What the token said about itself when it was selected.
    pub fn info(&self) -> &TokenInfo {
        &self.info
    }

    /// True when the token is no longer in its slot (a card pulled out). The slot list is asked
    /// for, not the slot's cached info: that is what makes OpenSC look at the reader again.
    /// Only called after a failure, so the short waits (for the reader service to notice a
    /// removal) never slow the normal path.
    fn token_gone(&self) -> bool {
        for attempt in 0..4 {
            if attempt > 0 {
                std::thread::sleep(std::time::Duration::from_millis(150));
            }
            let present = self
                .ctx
                .get_slots_with_token()
                .is_ok_and(|slots| slots.contains(&self.slot))
                && self.ctx.get_token_info(self.slot).is_ok();
            if !present {
                return true;
            }
        }
        false
    }

    fn fresh_flags(&self) -> PinFlags {
        self.ctx
            .get_token_info(self.slot)
            .map(|t| PinFlags {
                count_low: t.user_pin_count_low(),
                final_try: t.user_pin_final_try(),
                locked: t.user_pin_locked(),
            })
            .unwrap_or_default()
    }

    /// Logs in once, with every safety check; later calls do nothing.
    pub fn ensure_login(&mut self) -> Result<()> {
        if self.logged_in || !self.info.login_required {
            return Ok(());
        }
        // Another session of this process logged in already (a batch's first session): the
        // login belongs to the application, so this one is logged in too, with no PIN asked.
        if self.session.get_session_info().is_ok_and(|i| {
            matches!(
                i.session_state(),
                cryptoki::session::SessionState::RoUser | cryptoki::session::SessionState::RwUser
            )
        }) {
            self.logged_in = true;
            return Ok(());
        }
        let flags = self.fresh_flags();
        let info = TokenInfo {
            pin_count_low: flags.count_low,
            pin_final_try: flags.final_try,
            pin_locked: flags.locked,
            ..self.info.clone()
        };
        let pin = login::ask_pin(&info, &self.options)?;
        self.options
            .callbacks
            .verbose(&format!("logging in to {}", info.display_name()));
        login::login(&self.session, UserType::User, pin.as_ref(), || {
            self.fresh_flags()
        })?;
        self.pin = pin;
        self.logged_in = true;
        Ok(())
    }

    /// Forgets the PIN kept for context-specific logins (zeroized): a session agent holds the
    /// logged-in session, not the PIN, unless asked to keep it.
    pub fn forget_pin(&mut self) {
        self.pin = None;
    }

    /// Takes the PIN kept for context-specific logins out of the token (the agent keeps it in
    /// locked memory instead).
    pub fn take_pin(&mut self) -> Option<SecretString> {
        self.pin.take()
    }

    /// Sets the PIN for the next context-specific logins; `None` forgets it again.
    pub fn set_context_pin(&mut self, pin: Option<SecretString>) {
        self.pin = pin;
    }

    /// Whether the key with id `key_id` wants the PIN for every use (CKA_ALWAYS_AUTHENTICATE).
    pub fn needs_context_login(&mut self, key_id: &[u8]) -> Result<bool> {
        let key = self.private_key(key_id)?;
        Ok(self.always_authenticate(key))
    }

    /// Ends the login (the session agent's last step); a failure means it was gone already.
    pub fn logout(&mut self) {
        if self.logged_in {
            let _ = self.session.logout();
            self.logged_in = false;
        }
        self.key_handles.clear();
        self.pin = None;
    }

    /// The PIN flags as the token reports them now.
    pub fn pin_flags(&self) -> PinFlags {
        self.fresh_flags()
    }

    /// Checks that the session still holds the login: `Err` with the reason when the card went
    /// away, the session was closed or the login was lost (another program logged out).
    pub fn check_session(&self) -> Result<()> {
        // The slot list, not the session, is what makes OpenSC look at the reader again.
        let present = self
            .ctx
            .get_slots_with_token()
            .map_err(|e| pkcs11_error(&e))?
            .contains(&self.slot);
        if !present {
            return Err(Error::Token("the card was removed from the reader".into()));
        }
        let info = self
            .session
            .get_session_info()
            .map_err(|e| pkcs11_error(&e))?;
        use cryptoki::session::SessionState;
        match info.session_state() {
            SessionState::RoUser | SessionState::RwUser => Ok(()),
            _ if !self.info.login_required => Ok(()),
            _ => Err(Error::Token(
                "the token no longer holds the login (it was logged out)".into(),
            )),
        }
    }

    /// Every certificate; whether private keys are visible depends on the login state.
    pub fn read_certificates(&self) -> Result<Vec<KeyCertificate>> {
        objects::certificates(&self.session, self.logged_in || !self.info.login_required)
    }

    fn private_key(&mut self, id: &[u8]) -> Result<ObjectHandle> {
        self.ensure_login()?;
        if let Some((_, handle)) = self.key_handles.iter().find(|(k, _)| k == id) {
            return Ok(*handle);
        }
        let found = self
            .session
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Id(id.to_vec()),
            ])
            .map_err(|e| pkcs11_error(&e))?;
        let handle = found.first().copied().ok_or_else(|| {
            Error::KeyNotFound(format!(
                "the token {} has no private key with id {}",
                self.info.display_name(),
                hex::encode(id)
            ))
        })?;
        self.key_handles.push((id.to_vec(), handle));
        Ok(handle)
    }

    /// Whether the key wants the PIN again for each use (CKA_ALWAYS_AUTHENTICATE), as a CAC's
    /// or PIV card's signature key does.
    fn always_authenticate(&self, key: ObjectHandle) -> bool {
        self.session
            .get_attributes(key, &[AttributeType::AlwaysAuthenticate])
            .ok()
            .and_then(|attrs| {
                attrs.into_iter().find_map(|a| match a {
                    Attribute::AlwaysAuthenticate(b) => Some(b),
                    _ => None,
                })
            })
            .unwrap_or(false)
    }

    /// One signature. For an always-authenticate key the context-specific login must sit
    /// between C_SignInit and the signing call, so the multi-part form is used there.
    fn sign_once(
        &self,
        mechanism: &Mechanism<'_>,
        key: ObjectHandle,
        always: bool,
        data: &[u8],
    ) -> std::result::Result<Vec<u8>, SignStep> {
        if !always {
            return self
                .session
                .sign(mechanism, key, data)
                .map_err(SignStep::Token);
        }
        self.session
            .sign_init(mechanism, key)
            .map_err(SignStep::Token)?;
        self.options
            .callbacks
            .verbose("the signing key wants the PIN again (CKA_ALWAYS_AUTHENTICATE)");
        login::login(
            &self.session,
            UserType::ContextSpecific,
            self.pin.as_ref(),
            || self.fresh_flags(),
        )
        .map_err(SignStep::Login)?;
        self.session.sign_update(data).map_err(SignStep::Token)?;
        self.session.sign_final().map_err(SignStep::Token)
    }

    fn decrypt(
        &mut self,
        id: &[u8],
        mechanism: &Mechanism<'_>,
        data: &[u8],
    ) -> std::result::Result<Zeroizing<Vec<u8>>, KeyError> {
        let key = self.private_key(id)?;
        match self.session.decrypt(mechanism, key, data) {
            Ok(plain) => Ok(Zeroizing::new(plain)),
            Err(cryptoki::error::Error::Pkcs11(
                RvError::EncryptedDataInvalid
                | RvError::EncryptedDataLenRange
                | RvError::DataInvalid
                | RvError::DataLenRange,
                _,
            )) => Err(KeyError::Failed),
            // The token does not have the mechanism: the caller may have another way (raw RSA
            // for OAEP), else it reports what is missing.
            Err(cryptoki::error::Error::Pkcs11(
                RvError::MechanismInvalid | RvError::FunctionNotSupported,
                _,
            )) => Err(KeyError::Unsupported(
                mechanism.mechanism_type().to_string(),
            )),
            Err(e) => Err(KeyError::Backend(self.failure(&e))),
        }
    }

    fn sign_failure(&self, step: SignStep) -> KeyError {
        match step {
            SignStep::Token(e) => KeyError::Backend(self.failure(&e)),
            SignStep::Login(e) => KeyError::Backend(e),
        }
    }

    /// The error for a failed private-key operation. A card pulled out mid-operation often
    /// answers with a generic error (OpenSC: CKR_GENERAL_ERROR), so the slot is asked first.
    fn failure(&self, e: &cryptoki::error::Error) -> Error {
        if self.token_gone() {
            Error::Token(format!(
                "the token went away ({}): check that the card is in the reader, then run the command again",
                super::module::short_error(e)
            ))
        } else {
            pkcs11_error(e)
        }
    }
}

impl Token<'_> {
    /// One CKM_ECDH1_DERIVE with CKD_NULL, the peer point passed as `public_data`: the shared
    /// secret becomes a session object (a generic secret, extractable), its CKA_VALUE is read,
    /// and the object is destroyed at once.
    fn derive_shared_secret(
        &self,
        key: ObjectHandle,
        public_data: &[u8],
        field_len: usize,
    ) -> std::result::Result<Zeroizing<Vec<u8>>, cryptoki::error::Error> {
        let mechanism = Mechanism::Ecdh1Derive(Ecdh1DeriveParams::new(EcKdf::null(), public_data));
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::Token(false),
            Attribute::Sensitive(false),
            Attribute::Extractable(true),
            Attribute::ValueLen(Ulong::new(field_len as _)),
        ];
        let secret = self.session.derive_key(&mechanism, key, &template)?;
        let value = self.session.get_attributes(secret, &[AttributeType::Value]);
        // Destroy the derived object whatever the read gave. Should that fail, the object still
        // ends with the session: it was never a token object.
        let _ = self.session.destroy_object(secret);
        let value = value?.into_iter().find_map(|a| match a {
            Attribute::Value(v) => Some(Zeroizing::new(v)),
            _ => None,
        });
        // A module that hides the value despite the template: treat it as unreadable.
        value.ok_or(cryptoki::error::Error::Pkcs11(
            RvError::AttributeSensitive,
            cryptoki::context::Function::GetAttributeValue,
        ))
    }
}

/// `data` as a DER OCTET STRING, the form of an ECPoint some modules want in CKM_ECDH1_DERIVE.
fn der_octet_string(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x04];
    let len = data.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(data);
    out
}

/// The field size in bytes of the curve a SEC 1 point lies on, from its encoding.
fn field_len(point: &[u8]) -> Option<usize> {
    match point.first()? {
        0x04 if !point.len().is_multiple_of(2) && point.len() >= 3 => Some((point.len() - 1) / 2),
        0x02 | 0x03 if point.len() >= 2 => Some(point.len() - 1),
        _ => None,
    }
}

/// The DER DigestInfo prefix for PKCS#1 v1.5 signatures (RFC 8017 §9.2, note 1).
fn digest_info_prefix(hash: HashAlg) -> &'static [u8] {
    match hash {
        HashAlg::Sha1 => &[
            0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04,
            0x14,
        ],
        HashAlg::Sha224 => &[
            0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x04, 0x05, 0x00, 0x04, 0x1c,
        ],
        HashAlg::Sha256 => &[
            0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x01, 0x05, 0x00, 0x04, 0x20,
        ],
        HashAlg::Sha384 => &[
            0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x02, 0x05, 0x00, 0x04, 0x30,
        ],
        HashAlg::Sha512 => &[
            0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x03, 0x05, 0x00, 0x04, 0x40,
        ],
    }
}

/// Where a signing attempt failed: in a PKCS#11 call (maybe a missing mechanism, worth a
/// fallback) or in the context-specific login (a PIN problem, never retried).
enum SignStep {
    Token(cryptoki::error::Error),
    Login(Error),
}

fn mechanism_for(hash: HashAlg) -> (MechanismType, PkcsMgfType) {
    match hash {
        HashAlg::Sha1 => (MechanismType::SHA1, PkcsMgfType::MGF1_SHA1),
        HashAlg::Sha224 => (MechanismType::SHA224, PkcsMgfType::MGF1_SHA224),
        HashAlg::Sha256 => (MechanismType::SHA256, PkcsMgfType::MGF1_SHA256),
        HashAlg::Sha384 => (MechanismType::SHA384, PkcsMgfType::MGF1_SHA384),
        HashAlg::Sha512 => (MechanismType::SHA512, PkcsMgfType::MGF1_SHA512),
    }
}

impl KeyBackend for Token<'_> {
    fn certificates(&mut self) -> Result<Vec<KeyCertificate>> {
        self.read_certificates()
    }

    fn login(&mut self) -> Result<()> {
        self.ensure_login()
    }

    fn rsa_decrypt(
        &mut self,
        key_id: &[u8],
        padding: &RsaPadding,
        ciphertext: &[u8],
    ) -> std::result::Result<Zeroizing<Vec<u8>>, KeyError> {
        match padding {
            RsaPadding::Pkcs1v15 => match self.decrypt(key_id, &Mechanism::RsaPkcs, ciphertext) {
                // SoftHSM2 (and some cards) report bad PKCS#1 padding, i.e. the wrong key, as
                // CKR_GENERAL_ERROR: it is the same "this key did not open it".
                Err(KeyError::Backend(Error::Pkcs11 { rv, .. })) if rv == "CKR_GENERAL_ERROR" => {
                    Err(KeyError::Failed)
                }
                other => other,
            },
            RsaPadding::Oaep {
                hash,
                mgf_hash,
                label,
            } => {
                let (hash_mech, _) = mechanism_for(*hash);
                let (_, mgf) = mechanism_for(*mgf_hash);
                let source = if label.is_empty() {
                    PkcsOaepSource::empty()
                } else {
                    PkcsOaepSource::data_specified(label)
                };
                let mech = Mechanism::RsaPkcsOaep(PkcsOaepParams::new(hash_mech, mgf, source));
                let refused = match self.decrypt(key_id, &mech, ciphertext) {
                    // No CKM_RSA_PKCS_OAEP at all.
                    Err(KeyError::Unsupported(mechanism)) => mechanism,
                    // Modules refuse OAEP parameters they lack in several ways (SoftHSM2 2.6:
                    // ArgumentsBad for SHA-256, GeneralError for a label). Any of them sends the
                    // caller to the raw-RSA fallback, which fails uniformly if the key is wrong.
                    Err(KeyError::Backend(Error::Pkcs11 { rv, .. }))
                        if [
                            "CKR_MECHANISM_PARAM_INVALID",
                            "CKR_ARGUMENTS_BAD",
                            "CKR_GENERAL_ERROR",
                            "CKR_KEY_TYPE_INCONSISTENT",
                        ]
                        .contains(&rv.as_str()) =>
                    {
                        rv
                    }
                    other => return other,
                };
                self.options.callbacks.verbose(&format!(
                    "the token refused RSA-OAEP {} ({refused}); using raw RSA with OAEP decoding in software",
                    hash.name()
                ));
                Err(KeyError::Unsupported(format!(
                    "RSA-OAEP with {}",
                    hash.name()
                )))
            }
        }
    }

    fn sign(
        &mut self,
        key_id: &[u8],
        alg: SignAlg,
        tbs: &[u8],
    ) -> std::result::Result<Vec<u8>, KeyError> {
        let key = self.private_key(key_id)?;
        let hash = alg.hash();
        let digest = crate::cms::digest::digest(hash, &[tbs]);
        let (hash_mech, mgf) = mechanism_for(hash);
        let pss = PkcsPssParams {
            hash_alg: hash_mech,
            mgf,
            s_len: Ulong::new(hash.output_len() as _),
        };
        // Hash-and-sign mechanisms first (what some tokens allow exclusively), then the bare
        // mechanism over our own digest (what others have only).
        let (combined, bare_input, bare) = match alg {
            SignAlg::RsaPkcs1v15(h) => {
                let combined = match h {
                    HashAlg::Sha256 => Some(Mechanism::Sha256RsaPkcs),
                    HashAlg::Sha384 => Some(Mechanism::Sha384RsaPkcs),
                    HashAlg::Sha512 => Some(Mechanism::Sha512RsaPkcs),
                    _ => None,
                };
                let mut info = digest_info_prefix(h).to_vec();
                info.extend_from_slice(&digest);
                (combined, info, Mechanism::RsaPkcs)
            }
            SignAlg::RsaPss(h) => {
                let combined = match h {
                    HashAlg::Sha256 => Some(Mechanism::Sha256RsaPkcsPss(pss)),
                    HashAlg::Sha384 => Some(Mechanism::Sha384RsaPkcsPss(pss)),
                    HashAlg::Sha512 => Some(Mechanism::Sha512RsaPkcsPss(pss)),
                    _ => None,
                };
                (combined, digest.clone(), Mechanism::RsaPkcsPss(pss))
            }
            SignAlg::Ecdsa(h) => {
                // Hash-and-sign first here too: with a key that wants the PIN for each use the
                // signature is made in parts (C_SignInit, the login, C_SignUpdate/Final), which
                // PKCS#11 allows for these mechanisms but not for the bare CKM_ECDSA.
                let combined = match h {
                    HashAlg::Sha256 => Some(Mechanism::EcdsaSha256),
                    HashAlg::Sha384 => Some(Mechanism::EcdsaSha384),
                    HashAlg::Sha512 => Some(Mechanism::EcdsaSha512),
                    _ => None,
                };
                (combined, digest.clone(), Mechanism::Ecdsa)
            }
        };
        let always = self.always_authenticate(key);
        if let Some(mech) = combined {
            match self.sign_once(&mech, key, always, tbs) {
                Ok(sig) => return Ok(sig),
                Err(SignStep::Token(cryptoki::error::Error::Pkcs11(
                    RvError::MechanismInvalid
                    | RvError::MechanismParamInvalid
                    | RvError::FunctionNotSupported,
                    _,
                ))) => {}
                Err(e) => return Err(self.sign_failure(e)),
            }
        }
        self.sign_once(&bare, key, always, &bare_input)
            .map_err(|e| match e {
                // The bare mechanisms are single-part in PKCS#11, and a key that wants the PIN
                // for each use gets it between C_SignInit and the signing call, which cryptoki
                // offers only in parts: modules that keep to the standard refuse the parts.
                SignStep::Token(cryptoki::error::Error::Pkcs11(
                    RvError::OperationNotInitialized
                    | RvError::FunctionNotSupported
                    | RvError::MechanismInvalid,
                    _,
                )) if always => KeyError::Unsupported(format!(
                    "a {} signature with this key: it wants the PIN for every signature \
                     (CKA_ALWAYS_AUTHENTICATE), and the token has no hash-and-sign mechanism for \
                     it, only the single-part {}",
                    hash.name(),
                    bare.mechanism_type()
                )),
                e => self.sign_failure(e),
            })
    }

    fn ecdh(
        &mut self,
        key_id: &[u8],
        peer_point: &[u8],
    ) -> std::result::Result<Zeroizing<Vec<u8>>, KeyError> {
        let field_len = field_len(peer_point).ok_or(KeyError::Failed)?;
        let key = self.private_key(key_id)?;
        // PKCS#11 v2.40 wants the raw ECPoint (what SoftHSM2 takes); some modules still want
        // it DER-wrapped as in v2.20, and say so with CKR_MECHANISM_PARAM_INVALID.
        let result = match self.derive_shared_secret(key, peer_point, field_len) {
            Err(cryptoki::error::Error::Pkcs11(RvError::MechanismParamInvalid, _)) => {
                self.options
                    .callbacks
                    .verbose("the token refused the raw EC point for ECDH; passing it DER-wrapped");
                self.derive_shared_secret(key, &der_octet_string(peer_point), field_len)
            }
            other => other,
        };
        match result {
            Ok(z) => Ok(z),
            Err(cryptoki::error::Error::Pkcs11(
                RvError::MechanismInvalid | RvError::FunctionNotSupported,
                _,
            )) => Err(KeyError::Unsupported(
                "ECDH key agreement (CKM_ECDH1_DERIVE)".into(),
            )),
            // Not an EC key, or a point the token will not combine with it: not this key.
            Err(cryptoki::error::Error::Pkcs11(
                RvError::KeyTypeInconsistent | RvError::MechanismParamInvalid,
                _,
            )) => Err(KeyError::Failed),
            Err(e) => Err(KeyError::Backend(self.failure(&e))),
        }
    }

    fn rsa_raw(
        &mut self,
        key_id: &[u8],
        input: &[u8],
    ) -> std::result::Result<Zeroizing<Vec<u8>>, KeyError> {
        let out = match self.decrypt(key_id, &Mechanism::RsaX509, input) {
            Err(KeyError::Unsupported(_)) => {
                return Err(KeyError::Unsupported(
                    "raw RSA (CKM_RSA_X_509), which RSA-OAEP with these parameters needs on a \
                     token that does not do them itself"
                        .into(),
                ));
            }
            other => other?,
        };
        // Left-pad to the modulus length (the ciphertext's length in CMS).
        if out.len() >= input.len() {
            return Ok(out);
        }
        let mut padded = Zeroizing::new(vec![0u8; input.len() - out.len()]);
        padded.extend_from_slice(&out);
        Ok(padded)
    }
}

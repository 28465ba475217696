//! Certificates and private keys on a token, paired by CKA_ID (on real cards a key's label and
//! its certificate's label differ, so labels cannot pair them).

use super::login::pkcs11_error;
use super::uri::Pkcs11Uri;
use crate::error::{Error, Result};
use crate::keyops::KeyCertificate;
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use der::Decode;
use x509_cert::Certificate;

/// How the user named a key (`--key`): a label, `id:HEX`, or a `pkcs11:` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySelector {
    Label(String),
    Id(Vec<u8>),
    Uri(Pkcs11Uri),
}

impl std::str::FromStr for KeySelector {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        if s.starts_with("pkcs11:") {
            return Ok(KeySelector::Uri(Pkcs11Uri::parse(s)?));
        }
        if let Some(h) = s.strip_prefix("id:") {
            let id = hex::decode(h.replace(':', ""))
                .map_err(|_| Error::Usage(format!("--key id:{h} is not hexadecimal")))?;
            return Ok(KeySelector::Id(id));
        }
        Ok(KeySelector::Label(s.to_string()))
    }
}

impl KeySelector {
    /// True when the certificate (or its key, by label) is the one named. A label matches the
    /// certificate's label or the private key's.
    pub fn matches(&self, cert: &KeyCertificate) -> bool {
        let label_eq = |l: &str| cert.label == l || cert.key_label.as_deref() == Some(l);
        match self {
            KeySelector::Label(l) => label_eq(l),
            KeySelector::Id(id) => cert.id == *id,
            KeySelector::Uri(u) => {
                u.id.as_ref().is_none_or(|id| cert.id == *id)
                    && u.object.as_deref().is_none_or(label_eq)
            }
        }
    }
}

fn read_attrs(
    session: &Session,
    handle: ObjectHandle,
    types: &[AttributeType],
) -> Result<Vec<Attribute>> {
    session
        .get_attributes(handle, types)
        .map_err(|e| pkcs11_error(&e))
}

fn label_of(attrs: &[Attribute]) -> String {
    attrs
        .iter()
        .find_map(|a| match a {
            Attribute::Label(l) => Some(String::from_utf8_lossy(l).trim().to_string()),
            _ => None,
        })
        .unwrap_or_default()
}

fn id_of(attrs: &[Attribute]) -> Vec<u8> {
    attrs
        .iter()
        .find_map(|a| match a {
            Attribute::Id(id) => Some(id.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// Private keys visible in this session, as (id, label, handle).
pub fn private_keys(session: &Session) -> Result<Vec<(Vec<u8>, String, ObjectHandle)>> {
    let handles = session
        .find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])
        .map_err(|e| pkcs11_error(&e))?;
    let mut out = Vec::new();
    for h in handles {
        let attrs = read_attrs(session, h, &[AttributeType::Id, AttributeType::Label])?;
        out.push((id_of(&attrs), label_of(&attrs), h));
    }
    Ok(out)
}

/// Every X.509 certificate on the token, with whether its private key is visible.
/// `keys_visible` says whether the session can see private objects (logged in, or the token
/// needs no login); when it cannot, a key we do not see may still be there (`None`).
pub fn certificates(session: &Session, keys_visible: bool) -> Result<Vec<KeyCertificate>> {
    let keys = private_keys(session)?;
    let handles = session
        .find_objects(&[Attribute::Class(ObjectClass::CERTIFICATE)])
        .map_err(|e| pkcs11_error(&e))?;
    let mut out = Vec::new();
    for h in handles {
        let attrs = read_attrs(
            session,
            h,
            &[
                AttributeType::Value,
                AttributeType::Id,
                AttributeType::Label,
            ],
        )?;
        let Some(der) = attrs.iter().find_map(|a| match a {
            Attribute::Value(v) => Some(v.clone()),
            _ => None,
        }) else {
            continue;
        };
        // A certificate object that is not X.509 DER is skipped, not fatal: the other
        // certificates on the card are still usable.
        let Ok(certificate) = Certificate::from_der(&der) else {
            continue;
        };
        let id = id_of(&attrs);
        let key = keys.iter().find(|(kid, _, _)| *kid == id);
        out.push(KeyCertificate {
            certificate,
            der,
            label: label_of(&attrs),
            has_private_key: match (key, keys_visible) {
                (Some(_), _) => Some(true),
                (None, true) => Some(false),
                (None, false) => None,
            },
            key_label: key.map(|(_, l, _)| l.clone()),
            id,
        });
    }
    Ok(out)
}

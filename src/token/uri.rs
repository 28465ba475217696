//! RFC 7512 `pkcs11:` URIs: the attributes that select a token or an object.

use crate::error::{Error, Result};

/// The parts of a `pkcs11:` URI we use. Unknown attributes are ignored, as RFC 7512 asks;
/// `pin-value` is never read (a PIN does not belong in a URI on a command line).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pkcs11Uri {
    pub token: Option<String>,
    pub manufacturer: Option<String>,
    pub serial: Option<String>,
    pub model: Option<String>,
    pub slot_id: Option<u64>,
    /// CKA_LABEL of an object.
    pub object: Option<String>,
    /// CKA_ID of an object.
    pub id: Option<Vec<u8>>,
    /// `cert`, `private`, ...
    pub kind: Option<String>,
}

impl Pkcs11Uri {
    /// Parses `pkcs11:attr=value;attr=value?query`.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |why: &str| Error::Usage(format!("invalid pkcs11: URI ({why}): {text}"));
        let rest = text
            .strip_prefix("pkcs11:")
            .ok_or_else(|| bad("it must start with pkcs11:"))?;
        let path = rest.split('?').next().unwrap_or_default();
        let mut uri = Pkcs11Uri::default();
        for attr in path.split(';').filter(|a| !a.is_empty()) {
            let (name, value) = attr
                .split_once('=')
                .ok_or_else(|| bad("an attribute without '='"))?;
            let bytes = percent_decode(value).ok_or_else(|| bad("a bad %-escape"))?;
            let text_value = || String::from_utf8(bytes.clone()).map_err(|_| bad("non-UTF-8 text"));
            match name {
                "token" => uri.token = Some(text_value()?),
                "manufacturer" => uri.manufacturer = Some(text_value()?),
                "serial" => uri.serial = Some(text_value()?),
                "model" => uri.model = Some(text_value()?),
                "object" => uri.object = Some(text_value()?),
                "type" => uri.kind = Some(text_value()?),
                "id" => uri.id = Some(bytes),
                "slot-id" => {
                    uri.slot_id = Some(
                        text_value()?
                            .parse()
                            .map_err(|_| bad("slot-id is not a number"))?,
                    )
                }
                _ => {}
            }
        }
        Ok(uri)
    }
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_token_and_object_attributes() {
        let uri = Pkcs11Uri::parse(
            "pkcs11:token=CAC%20II;serial=1234;id=%00%01;object=Key%20Mgmt;type=private?pin-value=0000",
        )
        .unwrap();
        assert_eq!(uri.token.as_deref(), Some("CAC II"));
        assert_eq!(uri.serial.as_deref(), Some("1234"));
        assert_eq!(uri.id, Some(vec![0, 1]));
        assert_eq!(uri.object.as_deref(), Some("Key Mgmt"));
        assert_eq!(uri.kind.as_deref(), Some("private"));
    }

    #[test]
    fn rejects_what_is_not_a_uri() {
        assert!(Pkcs11Uri::parse("token=x").is_err());
        assert!(Pkcs11Uri::parse("pkcs11:id=%zz").is_err());
        assert!(Pkcs11Uri::parse("pkcs11:token").is_err());
    }
}

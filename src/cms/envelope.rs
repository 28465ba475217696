//! EnvelopedData and AuthEnvelopedData: reading the header (recipients, cipher) and decrypting
//! the content once a recipient's key has given up the content-encryption key.
//!
//! The envelope borrows from the input: the encrypted content is walked in place, chunk by chunk.

use crate::cms::ber::{Element, Reader, Tag};
use crate::cms::content::{self, ContentCipher};
use crate::cms::oids;
use crate::cms::recipient::{self, Recipient};
use crate::error::{Error, Result};
use const_oid::ObjectIdentifier;
use std::io::Write;
use zeroize::Zeroizing;

/// Which of the two enveloping content types a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvelopeKind {
    Enveloped,
    AuthEnveloped,
}

/// A parsed envelope, borrowing the encrypted content from the input.
#[derive(Debug)]
pub struct Envelope<'a> {
    pub kind: EnvelopeKind,
    pub recipients: Vec<Recipient>,
    /// The content type of what is inside (normally id-data).
    pub content_type: ObjectIdentifier,
    pub cipher: ContentCipher,
    encrypted_content: Option<Element<'a>>,
    /// DER of the authenticated attributes with a SET tag, the GCM additional data.
    auth_attrs: Vec<u8>,
    mac: Vec<u8>,
}

fn bad(what: &str) -> Error {
    Error::BadInput(format!("malformed CMS data: {what}"))
}

/// The content type of a ContentInfo and its content, without interpreting the content.
pub fn content_info(data: &[u8]) -> Result<(ObjectIdentifier, Element<'_>)> {
    let outer = Reader::new(data)
        .read("a ContentInfo")?
        .expect_universal(Tag::SEQUENCE, "a ContentInfo SEQUENCE")?;
    let mut fields = outer.children()?;
    let oid = content::read_oid(&mut fields)?;
    let explicit = fields.read("the content of a ContentInfo")?;
    if !explicit.tag.is_context(0) {
        return Err(bad("ContentInfo content is not [0]"));
    }
    let inner = explicit.children()?.read("the content of a ContentInfo")?;
    Ok((oid, inner))
}

/// Which envelope a ContentInfo's content type names; a plain error for anything else.
pub(crate) fn kind_of(oid: &ObjectIdentifier) -> Result<EnvelopeKind> {
    if *oid == oids::ENVELOPED_DATA {
        Ok(EnvelopeKind::Enveloped)
    } else if *oid == oids::AUTH_ENVELOPED_DATA {
        Ok(EnvelopeKind::AuthEnveloped)
    } else if *oid == oids::SIGNED_DATA {
        Err(Error::BadInput(
            "this message is signed, not encrypted: there is nothing to decrypt".into(),
        ))
    } else {
        Err(Error::Unsupported(format!(
            "CMS content type {} is not an encrypted message",
            oids::name(oid)
        )))
    }
}

/// AuthEnvelopedData must use an authenticated cipher (GCM), EnvelopedData must not.
pub(crate) fn check_cipher(kind: EnvelopeKind, cipher: &ContentCipher) -> Result<()> {
    let gcm = matches!(cipher, ContentCipher::AesGcm { .. });
    match kind {
        EnvelopeKind::AuthEnveloped if !gcm => Err(Error::Unsupported(format!(
            "authenticated encryption with {}",
            cipher.name()
        ))),
        EnvelopeKind::Enveloped if gcm => Err(bad(
            "AES-GCM in EnvelopedData (it belongs in AuthEnvelopedData)",
        )),
        _ => Ok(()),
    }
}

impl<'a> Envelope<'a> {
    /// The encrypted content's chunks, for comparing parsers in tests.
    #[cfg(test)]
    pub(crate) fn content_chunks(
        &self,
    ) -> impl Iterator<Item = std::result::Result<&'a [u8], crate::cms::ber::BerError>> + use<'a>
    {
        self.encrypted_content
            .into_iter()
            .flat_map(|e| e.octet_chunks())
    }

    #[cfg(test)]
    pub(crate) fn mac(&self) -> &[u8] {
        &self.mac
    }

    /// Parses a ContentInfo holding EnvelopedData or AuthEnvelopedData.
    pub fn parse(data: &'a [u8]) -> Result<Self> {
        let (oid, body) = content_info(data)?;
        let kind = kind_of(&oid)?;
        let mut fields = body
            .expect_universal(Tag::SEQUENCE, "an EnvelopedData SEQUENCE")?
            .children()?;
        fields
            .read("a version")?
            .expect_universal(Tag::INTEGER, "a version")?;
        let mut next = fields.read("the recipient infos")?;
        if next.tag.is_context(0) {
            // originatorInfo: certificates and CRLs of the sender, not needed to decrypt.
            next = fields.read("the recipient infos")?;
        }
        let recipients = recipient::parse_recipients(&next)?;

        let eci = fields
            .read("the encrypted content info")?
            .expect_universal(Tag::SEQUENCE, "an EncryptedContentInfo")?;
        let mut eci_fields = eci.children()?;
        let content_type = content::read_oid(&mut eci_fields)?;
        let alg = eci_fields.read("the content-encryption algorithm")?;
        let cipher = ContentCipher::from_algorithm(&alg)?;
        let encrypted_content = match eci_fields.next().transpose()? {
            Some(e) if e.tag.is_context(0) => Some(e),
            Some(_) => return Err(bad("encryptedContent is not [0]")),
            None => None,
        };

        let mut auth_attrs = Vec::new();
        let mut mac = Vec::new();
        match kind {
            EnvelopeKind::AuthEnveloped => {
                let mut e = fields.read("the authentication tag")?;
                if e.tag.is_context(1) {
                    auth_attrs = e.to_der_with_tag(Tag {
                        class: crate::cms::ber::Class::Universal,
                        constructed: true,
                        number: Tag::SET,
                    })?;
                    e = fields.read("the authentication tag")?;
                }
                if !e.tag.is_universal(Tag::OCTET_STRING) {
                    return Err(bad("the authentication tag is not an OCTET STRING"));
                }
                mac = e.octets()?;
            }
            EnvelopeKind::Enveloped => {}
        }
        check_cipher(kind, &cipher)?;
        // Whatever follows (unprotected attributes) is not needed; it must still be well formed.
        for rest in fields {
            rest?;
        }
        Ok(Envelope {
            kind,
            recipients,
            content_type,
            cipher,
            encrypted_content,
            auth_attrs,
            mac,
        })
    }

    /// Decrypts the content with `cek` into `out`. GCM plaintext reaches `out` only after the
    /// tag verifies; CBC plaintext streams. Returns the plaintext length.
    pub fn decrypt_content(&self, cek: &[u8], out: &mut dyn Write) -> Result<u64> {
        if !self.cipher.key_fits(cek.len()) {
            return Err(Error::DecryptFailed);
        }
        let content = self.encrypted_content.ok_or_else(|| {
            Error::Unsupported(
                "the encrypted content is detached (not in the message); it cannot be decrypted"
                    .into(),
            )
        })?;
        match self.kind {
            EnvelopeKind::Enveloped => {
                content::decrypt_cbc(&self.cipher, cek, content.octet_chunks(), out)
            }
            EnvelopeKind::AuthEnveloped => {
                let ciphertext = Zeroizing::new(content.octets()?);
                let plain = content::decrypt_gcm(
                    &self.cipher,
                    cek,
                    &self.auth_attrs,
                    ciphertext,
                    &self.mac,
                )?;
                out.write_all(&plain)
                    .map_err(|e| Error::io("cannot write the decrypted output", e))?;
                Ok(plain.len() as u64)
            }
        }
    }
}

//! Object identifiers the CMS code recognises, in one place.

use const_oid::ObjectIdentifier as Oid;

pub const DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.1");
pub const SIGNED_DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.2");
pub const ENVELOPED_DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.3");
pub const AUTH_ENVELOPED_DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.9.16.1.23");
pub const COMPRESSED_DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.9.16.1.9");

pub const RSA_ENCRYPTION: Oid = Oid::new_unwrap("1.2.840.113549.1.1.1");
pub const RSAES_OAEP: Oid = Oid::new_unwrap("1.2.840.113549.1.1.7");
pub const MGF1: Oid = Oid::new_unwrap("1.2.840.113549.1.1.8");
pub const P_SPECIFIED: Oid = Oid::new_unwrap("1.2.840.113549.1.1.9");

pub const SHA1: Oid = Oid::new_unwrap("1.3.14.3.2.26");
pub const SHA256: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.1");
pub const SHA384: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.2");
pub const SHA512: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.3");
pub const SHA224: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.4");

pub const AES128_CBC: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.1.2");
pub const AES192_CBC: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.1.22");
pub const AES256_CBC: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.1.42");
pub const AES128_GCM: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.1.6");
pub const AES192_GCM: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.1.26");
pub const AES256_GCM: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.1.46");
pub const DES_EDE3_CBC: Oid = Oid::new_unwrap("1.2.840.113549.3.7");
pub const RC2_CBC: Oid = Oid::new_unwrap("1.2.840.113549.3.2");

pub const EC_PUBLIC_KEY: Oid = Oid::new_unwrap("1.2.840.10045.2.1");
pub const SECP256R1: Oid = Oid::new_unwrap("1.2.840.10045.3.1.7");
pub const SECP384R1: Oid = Oid::new_unwrap("1.3.132.0.34");
pub const SECP521R1: Oid = Oid::new_unwrap("1.3.132.0.35");

/// ECDH key-agreement schemes of RFC 5753 §7.1.4 (X9.63 KDF with the named digest).
pub const ECDH_STD_SHA1KDF: Oid = Oid::new_unwrap("1.3.133.16.840.63.0.2");
pub const ECDH_STD_SHA224KDF: Oid = Oid::new_unwrap("1.3.132.1.11.0");
pub const ECDH_STD_SHA256KDF: Oid = Oid::new_unwrap("1.3.132.1.11.1");
pub const ECDH_STD_SHA384KDF: Oid = Oid::new_unwrap("1.3.132.1.11.2");
pub const ECDH_STD_SHA512KDF: Oid = Oid::new_unwrap("1.3.132.1.11.3");
pub const ECDH_COFACTOR_SHA1KDF: Oid = Oid::new_unwrap("1.3.133.16.840.63.0.3");
pub const ECDH_COFACTOR_SHA224KDF: Oid = Oid::new_unwrap("1.3.132.1.14.0");
pub const ECDH_COFACTOR_SHA256KDF: Oid = Oid::new_unwrap("1.3.132.1.14.1");
pub const ECDH_COFACTOR_SHA384KDF: Oid = Oid::new_unwrap("1.3.132.1.14.2");
pub const ECDH_COFACTOR_SHA512KDF: Oid = Oid::new_unwrap("1.3.132.1.14.3");
/// ECMQV (RFC 5753 §7.1.4): listed to name it, not supported.
pub const ECMQV_SHA1KDF: Oid = Oid::new_unwrap("1.3.133.16.840.63.0.16");

/// AES key wrap (RFC 3394, RFC 3565).
pub const AES128_WRAP: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.1.5");
pub const AES192_WRAP: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.1.25");
pub const AES256_WRAP: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.1.45");

pub const EXT_SUBJECT_KEY_ID: Oid = Oid::new_unwrap("2.5.29.14");
pub const EXT_KEY_USAGE: Oid = Oid::new_unwrap("2.5.29.15");
pub const EXT_SUBJECT_ALT_NAME: Oid = Oid::new_unwrap("2.5.29.17");
pub const EXT_EXTENDED_KEY_USAGE: Oid = Oid::new_unwrap("2.5.29.37");
pub const EMAIL_ADDRESS: Oid = Oid::new_unwrap("1.2.840.113549.1.9.1");

/// A readable name for an OID we know, else its dotted form.
pub fn name(oid: &Oid) -> String {
    let known = [
        (DATA, "data"),
        (SIGNED_DATA, "signedData"),
        (ENVELOPED_DATA, "envelopedData"),
        (AUTH_ENVELOPED_DATA, "authEnvelopedData"),
        (COMPRESSED_DATA, "compressedData"),
        (RSA_ENCRYPTION, "RSA PKCS#1 v1.5"),
        (RSAES_OAEP, "RSAES-OAEP"),
        (AES128_CBC, "AES-128-CBC"),
        (AES192_CBC, "AES-192-CBC"),
        (AES256_CBC, "AES-256-CBC"),
        (AES128_GCM, "AES-128-GCM"),
        (AES192_GCM, "AES-192-GCM"),
        (AES256_GCM, "AES-256-GCM"),
        (DES_EDE3_CBC, "3DES-CBC"),
        (RC2_CBC, "RC2-CBC"),
        (EC_PUBLIC_KEY, "EC"),
        (SECP256R1, "P-256"),
        (SECP384R1, "P-384"),
        (SECP521R1, "P-521"),
        (ECMQV_SHA1KDF, "ECMQV"),
        (AES128_WRAP, "AES-128 key wrap"),
        (AES192_WRAP, "AES-192 key wrap"),
        (AES256_WRAP, "AES-256 key wrap"),
    ];
    known
        .iter()
        .find(|(o, _)| o == oid)
        .map(|(_, n)| (*n).to_string())
        .unwrap_or_else(|| oid.to_string())
}

//! Names of things a plan file mentions: the intercepted functions, return values (`CKR_*`) and
//! mechanisms (`CKM_*`). Plans and logs speak the names of the PKCS#11 specification, so a test
//! reads like the spy log or the standard it checks.

use cryptoki_sys::CK_ULONG;

/// `(name, value)` pairs from the constants `cryptoki-sys` defines.
macro_rules! named {
    ($($name:ident),* $(,)?) => {
        &[$((stringify!($name), cryptoki_sys::$name)),*]
    };
}

/// Every return value PKCS#11 3.x defines, so any of them can be injected by name.
pub const RETURN_VALUES: &[(&str, CK_ULONG)] = named![
    CKR_OK,
    CKR_CANCEL,
    CKR_HOST_MEMORY,
    CKR_SLOT_ID_INVALID,
    CKR_GENERAL_ERROR,
    CKR_FUNCTION_FAILED,
    CKR_ARGUMENTS_BAD,
    CKR_NO_EVENT,
    CKR_NEED_TO_CREATE_THREADS,
    CKR_CANT_LOCK,
    CKR_ATTRIBUTE_READ_ONLY,
    CKR_ATTRIBUTE_SENSITIVE,
    CKR_ATTRIBUTE_TYPE_INVALID,
    CKR_ATTRIBUTE_VALUE_INVALID,
    CKR_ACTION_PROHIBITED,
    CKR_DATA_INVALID,
    CKR_DATA_LEN_RANGE,
    CKR_DEVICE_ERROR,
    CKR_DEVICE_MEMORY,
    CKR_DEVICE_REMOVED,
    CKR_ENCRYPTED_DATA_INVALID,
    CKR_ENCRYPTED_DATA_LEN_RANGE,
    CKR_AEAD_DECRYPT_FAILED,
    CKR_FUNCTION_CANCELED,
    CKR_FUNCTION_NOT_PARALLEL,
    CKR_FUNCTION_NOT_SUPPORTED,
    CKR_KEY_HANDLE_INVALID,
    CKR_KEY_SIZE_RANGE,
    CKR_KEY_TYPE_INCONSISTENT,
    CKR_KEY_NOT_NEEDED,
    CKR_KEY_CHANGED,
    CKR_KEY_NEEDED,
    CKR_KEY_INDIGESTIBLE,
    CKR_KEY_FUNCTION_NOT_PERMITTED,
    CKR_KEY_NOT_WRAPPABLE,
    CKR_KEY_UNEXTRACTABLE,
    CKR_MECHANISM_INVALID,
    CKR_MECHANISM_PARAM_INVALID,
    CKR_OBJECT_HANDLE_INVALID,
    CKR_OPERATION_ACTIVE,
    CKR_OPERATION_NOT_INITIALIZED,
    CKR_PIN_INCORRECT,
    CKR_PIN_INVALID,
    CKR_PIN_LEN_RANGE,
    CKR_PIN_EXPIRED,
    CKR_PIN_LOCKED,
    CKR_SESSION_CLOSED,
    CKR_SESSION_COUNT,
    CKR_SESSION_HANDLE_INVALID,
    CKR_SESSION_PARALLEL_NOT_SUPPORTED,
    CKR_SESSION_READ_ONLY,
    CKR_SESSION_EXISTS,
    CKR_SESSION_READ_ONLY_EXISTS,
    CKR_SESSION_READ_WRITE_SO_EXISTS,
    CKR_SIGNATURE_INVALID,
    CKR_SIGNATURE_LEN_RANGE,
    CKR_TEMPLATE_INCOMPLETE,
    CKR_TEMPLATE_INCONSISTENT,
    CKR_TOKEN_NOT_PRESENT,
    CKR_TOKEN_NOT_RECOGNIZED,
    CKR_TOKEN_WRITE_PROTECTED,
    CKR_UNWRAPPING_KEY_HANDLE_INVALID,
    CKR_UNWRAPPING_KEY_SIZE_RANGE,
    CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT,
    CKR_USER_ALREADY_LOGGED_IN,
    CKR_USER_NOT_LOGGED_IN,
    CKR_USER_PIN_NOT_INITIALIZED,
    CKR_USER_TYPE_INVALID,
    CKR_USER_ANOTHER_ALREADY_LOGGED_IN,
    CKR_USER_TOO_MANY_TYPES,
    CKR_WRAPPED_KEY_INVALID,
    CKR_WRAPPED_KEY_LEN_RANGE,
    CKR_WRAPPING_KEY_HANDLE_INVALID,
    CKR_WRAPPING_KEY_SIZE_RANGE,
    CKR_WRAPPING_KEY_TYPE_INCONSISTENT,
    CKR_RANDOM_SEED_NOT_SUPPORTED,
    CKR_RANDOM_NO_RNG,
    CKR_DOMAIN_PARAMS_INVALID,
    CKR_CURVE_NOT_SUPPORTED,
    CKR_BUFFER_TOO_SMALL,
    CKR_SAVED_STATE_INVALID,
    CKR_INFORMATION_SENSITIVE,
    CKR_STATE_UNSAVEABLE,
    CKR_CRYPTOKI_NOT_INITIALIZED,
    CKR_CRYPTOKI_ALREADY_INITIALIZED,
    CKR_MUTEX_BAD,
    CKR_MUTEX_NOT_LOCKED,
    CKR_NEW_PIN_MODE,
    CKR_NEXT_OTP,
    CKR_EXCEEDED_MAX_ITERATIONS,
    CKR_FIPS_SELF_TEST_FAILED,
    CKR_LIBRARY_LOAD_FAILED,
    CKR_PIN_TOO_WEAK,
    CKR_PUBLIC_KEY_INVALID,
    CKR_FUNCTION_REJECTED,
    CKR_TOKEN_RESOURCE_EXCEEDED,
    CKR_OPERATION_CANCEL_FAILED,
    CKR_KEY_EXHAUSTED,
    CKR_PENDING,
    CKR_SESSION_ASYNC_NOT_SUPPORTED,
    CKR_SEED_RANDOM_REQUIRED,
    CKR_OPERATION_NOT_VALIDATED,
    CKR_TOKEN_NOT_INITIALIZED,
    CKR_PARAMETER_SET_NOT_SUPPORTED,
    CKR_VENDOR_DEFINED,
];

/// The mechanisms p11smime and its tests use; any other can be named by number (`0x1234`).
pub const MECHANISMS: &[(&str, CK_ULONG)] = named![
    CKM_RSA_PKCS,
    CKM_RSA_X_509,
    CKM_RSA_PKCS_OAEP,
    CKM_RSA_PKCS_PSS,
    CKM_SHA1_RSA_PKCS,
    CKM_SHA256_RSA_PKCS,
    CKM_SHA384_RSA_PKCS,
    CKM_SHA512_RSA_PKCS,
    CKM_SHA1_RSA_PKCS_PSS,
    CKM_SHA256_RSA_PKCS_PSS,
    CKM_SHA384_RSA_PKCS_PSS,
    CKM_SHA512_RSA_PKCS_PSS,
    CKM_ECDSA,
    CKM_ECDSA_SHA1,
    CKM_ECDSA_SHA256,
    CKM_ECDSA_SHA384,
    CKM_ECDSA_SHA512,
    CKM_ECDH1_DERIVE,
    CKM_ECDH1_COFACTOR_DERIVE,
    CKM_SHA_1,
    CKM_SHA256,
    CKM_SHA384,
    CKM_SHA512,
    CKM_AES_CBC,
    CKM_AES_CBC_PAD,
    CKM_AES_GCM,
    CKM_AES_KEY_WRAP,
    CKM_AES_KEY_WRAP_PAD,
    CKM_DES3_CBC,
    CKM_GENERIC_SECRET_KEY_GEN,
    CKM_RSA_PKCS_KEY_PAIR_GEN,
    CKM_EC_KEY_PAIR_GEN,
];

/// The value of `name` in `table`, or a number written as `0x…` hex or decimal.
pub fn value(table: &[(&str, CK_ULONG)], name: &str) -> Option<CK_ULONG> {
    if let Some(hex) = name.strip_prefix("0x").or_else(|| name.strip_prefix("0X")) {
        return CK_ULONG::from_str_radix(hex, 16).ok();
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return name.parse().ok();
    }
    table.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// The name of return value `rv` for the log, or its number in hex when it has none.
pub fn rv_name(rv: CK_ULONG) -> String {
    RETURN_VALUES
        .iter()
        .find(|(_, v)| *v == rv)
        .map_or_else(|| format!("0x{rv:x}"), |(n, _)| (*n).to_string())
}

/// Declares [`Func`] from `Variant = "C_Name"` pairs.
macro_rules! functions {
    ($($variant:ident = $name:literal),* $(,)?) => {
        /// The functions this module intercepts; every other entry of the function list is the
        /// real module's own pointer. The discriminant indexes the per-process call counters.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Func {
            $($variant),*
        }

        impl Func {
            pub const ALL: &[Func] = &[$(Func::$variant),*];

            pub fn name(self) -> &'static str {
                match self {
                    $(Func::$variant => $name),*
                }
            }

            pub fn from_name(name: &str) -> Option<Func> {
                Func::ALL.iter().copied().find(|f| f.name() == name)
            }
        }
    };
}

functions! {
    Initialize = "C_Initialize",
    Finalize = "C_Finalize",
    GetSlotList = "C_GetSlotList",
    GetSlotInfo = "C_GetSlotInfo",
    GetTokenInfo = "C_GetTokenInfo",
    GetMechanismList = "C_GetMechanismList",
    GetMechanismInfo = "C_GetMechanismInfo",
    OpenSession = "C_OpenSession",
    CloseSession = "C_CloseSession",
    GetSessionInfo = "C_GetSessionInfo",
    Login = "C_Login",
    Logout = "C_Logout",
    FindObjectsInit = "C_FindObjectsInit",
    FindObjects = "C_FindObjects",
    FindObjectsFinal = "C_FindObjectsFinal",
    GetAttributeValue = "C_GetAttributeValue",
    DestroyObject = "C_DestroyObject",
    DecryptInit = "C_DecryptInit",
    Decrypt = "C_Decrypt",
    SignInit = "C_SignInit",
    Sign = "C_Sign",
    SignUpdate = "C_SignUpdate",
    SignFinal = "C_SignFinal",
    DeriveKey = "C_DeriveKey",
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(value(RETURN_VALUES, "CKR_DEVICE_REMOVED"), Some(0x32));
        assert_eq!(value(RETURN_VALUES, "0x32"), Some(0x32));
        assert_eq!(value(RETURN_VALUES, "50"), Some(50));
        assert_eq!(value(RETURN_VALUES, "CKR_NO_SUCH"), None);
        assert_eq!(value(MECHANISMS, "CKM_RSA_PKCS_OAEP"), Some(9));
        assert_eq!(rv_name(0xa0), "CKR_PIN_INCORRECT");
        assert_eq!(rv_name(0x8000_0001), "0x80000001");
        assert_eq!(Func::from_name("C_Login"), Some(Func::Login));
        assert_eq!(Func::from_name("C_Encrypt"), None);
    }
}

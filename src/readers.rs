//! Smart-card readers as PC/SC sees them: every reader, whether a card is in it, the card's ATR,
//! and what kind of card that ATR says it is (CAC, PIV, YubiKey) when a small table knows it.
//!
//! This module owns the PC/SC side (`pcsc`, over pcsc-lite's pcscd on Linux and the system's
//! smart-card service on macOS) and its errors ([`ReaderError`]). It only looks: the reader states
//! come from `SCardGetStatusChange`, so no card is connected to, reset or powered, and a card
//! another program holds (gpg's scdaemon, say) is still reported. It never prints.

use crate::{Error, Result};
use serde::Serialize;
use std::ffi::CString;
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;

/// One reader and what is in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Reader {
    /// The reader's name as PC/SC gives it (e.g. "Yubico YubiKey OTP+FIDO+CCID 00 00").
    pub name: String,
    /// A card is in the reader (a USB token such as a YubiKey always "has" its card).
    pub card_present: bool,
    /// A card is there but does not answer (inserted the wrong way, or broken).
    pub card_mute: bool,
    /// Another program has the card open (shared).
    pub in_use: bool,
    /// Another program has the card open exclusively (e.g. gpg's scdaemon): others must wait.
    pub exclusive: bool,
    /// The card's Answer To Reset in upper-case hex, without spaces; `None` without a card.
    pub atr: Option<String>,
    /// What the ATR says the card is; `None` without a card.
    pub card_type: Option<CardType>,
    /// The card's model, when its exact ATR is known.
    pub card_model: Option<&'static str>,
}

/// A kind of card, as far as its ATR tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum CardType {
    /// A US DoD Common Access Card.
    #[serde(rename = "CAC")]
    Cac,
    /// A PIV card (FIPS 201), or a card announcing the PIV application in its ATR.
    #[serde(rename = "PIV")]
    Piv,
    /// A Yubico YubiKey (its PIV application is what PKCS#11 uses).
    #[serde(rename = "YubiKey")]
    YubiKey,
    /// None of the above, or not recognised.
    #[serde(rename = "unknown")]
    Unknown,
}

impl std::fmt::Display for CardType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CardType::Cac => "CAC",
            CardType::Piv => "PIV",
            CardType::YubiKey => "YubiKey",
            CardType::Unknown => "unknown",
        })
    }
}

/// What went wrong talking to PC/SC. All map to exit code 6 through [`Error::Reader`].
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ReaderError {
    /// No smart-card service answers (`SCARD_E_NO_SERVICE`): on Linux, pcscd is not running.
    #[error("{}", no_service_message(.socket.as_ref()))]
    NoService {
        /// `PCSCLITE_CSOCK_NAME`, when it is set: the socket where nothing answered.
        socket: Option<PathBuf>,
    },
    /// The service runs but sees no reader at all.
    #[error("no smart-card reader found")]
    NoReaders,
    /// Any other PC/SC failure.
    #[error("PC/SC reported \"{message}\" in {function}")]
    Pcsc {
        function: &'static str,
        message: String,
    },
}

fn no_service_message(socket: Option<&PathBuf>) -> String {
    let base = if cfg!(target_os = "macos") {
        "the smart-card service (PC/SC) is not available"
    } else {
        "pcscd is not running (no PC/SC smart-card service)"
    };
    match socket {
        Some(s) => format!("{base}: nothing answers at {}", s.display()),
        None => base.to_string(),
    }
}

impl ReaderError {
    fn from_pcsc(function: &'static str, e: pcsc::Error) -> Self {
        match e {
            pcsc::Error::NoService | pcsc::Error::ServiceStopped => ReaderError::NoService {
                socket: std::env::var_os("PCSCLITE_CSOCK_NAME").map(PathBuf::from),
            },
            pcsc::Error::NoReadersAvailable => ReaderError::NoReaders,
            other => ReaderError::Pcsc {
                function,
                message: other.to_string(),
            },
        }
    }
}

impl From<ReaderError> for Error {
    fn from(e: ReaderError) -> Self {
        Error::Reader(e)
    }
}

/// Every reader PC/SC knows, in its order, with the state of the card in each.
///
/// Fails with [`ReaderError::NoService`] when no smart-card service runs and with
/// [`ReaderError::NoReaders`] when it sees no reader.
pub fn list() -> Result<Vec<Reader>> {
    let context =
        pcsc::Context::establish(pcsc::Scope::User).map_err(pcsc_err("SCardEstablishContext"))?;
    let names = context
        .list_readers_owned()
        .map_err(pcsc_err("SCardListReaders"))?;
    if names.is_empty() {
        // The crate turns SCARD_E_NO_READERS_AVAILABLE into an empty list.
        return Err(ReaderError::NoReaders.into());
    }
    let mut states: Vec<pcsc::ReaderState> = names
        .iter()
        .map(|n| pcsc::ReaderState::new(CString::clone(n), pcsc::State::UNAWARE))
        .collect();
    // With UNAWARE as the known state this returns at once with the current states; the
    // timeout only bounds a misbehaving service.
    context
        .get_status_change(Duration::from_secs(5), &mut states)
        .map_err(pcsc_err("SCardGetStatusChange"))?;
    Ok(states.iter().map(reader_from_state).collect())
}

fn pcsc_err(function: &'static str) -> impl Fn(pcsc::Error) -> Error {
    move |e| ReaderError::from_pcsc(function, e).into()
}

fn reader_from_state(state: &pcsc::ReaderState) -> Reader {
    let flags = state.event_state();
    let card_present = flags.contains(pcsc::State::PRESENT);
    let atr = state.atr();
    let (atr, card_type, card_model) = if card_present && !atr.is_empty() {
        let (kind, model) = identify(atr);
        (Some(hex::encode_upper(atr)), Some(kind), model)
    } else if card_present {
        (None, Some(CardType::Unknown), None)
    } else {
        (None, None, None)
    };
    Reader {
        name: state.name().to_string_lossy().into_owned(),
        card_present,
        card_mute: card_present && flags.contains(pcsc::State::MUTE),
        in_use: flags.contains(pcsc::State::INUSE),
        exclusive: flags.contains(pcsc::State::EXCLUSIVE),
        atr,
        card_type,
        card_model,
    }
}

/// Exact ATRs of well-known cards (the public smart-card ATR lists carry these).
const KNOWN_ATRS: &[(&str, CardType, &str)] = &[
    (
        "3BFD1300008131FE158073C021C057597562694B657940",
        CardType::YubiKey,
        "YubiKey 5 NFC",
    ),
    (
        "3BF81300008131FE15597562696B657934D4",
        CardType::YubiKey,
        "YubiKey 4",
    ),
    (
        "3BDB9600801F030031C064B0F3100007900080",
        CardType::Cac,
        "DoD CAC, Oberthur ID-One 128 v5.5 Dual",
    ),
    (
        "3B7F1100000031C053CAC4016452D90400829000",
        CardType::Cac,
        "DoD CAC, Oberthur CosmopolIC 32K v4",
    ),
    (
        "3B7D96000080318065B0831117D683009000",
        CardType::Cac,
        "DoD CAC, Gemalto TOP DL GX4 144K",
    ),
    (
        "3B7D96000080318065B07549170F83009000",
        CardType::Cac,
        "DoD CAC, Gemalto TOP DL v2.1 144K",
    ),
    (
        "3BD81800801F078031C1640806920FDF",
        CardType::Cac,
        "DoD CAC, IDEMIA Cosmo v8",
    ),
];

/// The PIV application identifier (NIST's RID A000000308, PIX 00001000), which many PIV cards
/// name in their historical bytes.
const PIV_AID: &[u8] = &[0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00];

/// What kind of card an ATR belongs to, and its model when the exact ATR is known.
///
/// Exact matches first, then two patterns: "YubiKey" in ASCII (any case) in the historical bytes,
/// as every YubiKey since the NEO sends, and the PIV application identifier. Anything else is
/// [`CardType::Unknown`]: an ATR names a chip and its software, not who issued the card.
pub fn identify(atr: &[u8]) -> (CardType, Option<&'static str>) {
    let hex = hex::encode_upper(atr);
    for (known, kind, model) in KNOWN_ATRS {
        if *known == hex {
            return (*kind, Some(model));
        }
    }
    if contains(&atr.to_ascii_lowercase(), b"yubikey") {
        return (CardType::YubiKey, None);
    }
    if contains(atr, PIV_AID) {
        return (CardType::Piv, None);
    }
    (CardType::Unknown, None)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        hex::decode(s).unwrap_or_default()
    }

    #[test]
    fn the_table_is_well_formed_hex() {
        for (atr, _, model) in KNOWN_ATRS {
            let bytes = unhex(atr);
            assert!(bytes.len() >= 2 && bytes[0] == 0x3B, "{model}: {atr}");
            assert_eq!(identify(&bytes).1, Some(*model));
        }
    }

    #[test]
    fn known_atrs_and_patterns() {
        let yk5 = unhex("3B FD 13 00 00 81 31 FE 15 80 73 C0 21 C0 57 59 75 62 69 4B 65 79 40");
        assert_eq!(identify(&yk5), (CardType::YubiKey, Some("YubiKey 5 NFC")));
        // The same key over NFC: another ATR, "YubiKey" still in the historical bytes.
        let yk_nfc = unhex("3B 8D 80 01 80 73 C0 21 C0 57 59 75 62 69 4B 65 79 F9");
        assert_eq!(identify(&yk_nfc), (CardType::YubiKey, None));
        let cac = unhex("3B DB 96 00 80 1F 03 00 31 C0 64 B0 F3 10 00 07 90 00 80");
        assert_eq!(identify(&cac).0, CardType::Cac);
        let piv = unhex("3B DB 96 00 81 B1 FE 45 1F 83 80 F9 A0 00 00 03 08 00 00 10 00 98");
        assert_eq!(identify(&piv), (CardType::Piv, None));
        assert_eq!(identify(&unhex("3B 02 14 50")), (CardType::Unknown, None));
        assert_eq!(identify(&[]), (CardType::Unknown, None));
    }

    #[test]
    fn card_types_serialize_as_users_read_them() {
        let names: Vec<String> = [
            CardType::Cac,
            CardType::Piv,
            CardType::YubiKey,
            CardType::Unknown,
        ]
        .iter()
        .map(|t| serde_json::to_string(t).unwrap_or_default())
        .collect();
        assert_eq!(names, ["\"CAC\"", "\"PIV\"", "\"YubiKey\"", "\"unknown\""]);
    }
}

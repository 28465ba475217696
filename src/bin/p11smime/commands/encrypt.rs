//! `p11smime encrypt`: encrypt to certificates, with a copy to your own card.

use super::{pin_source, print_json};
use crate::cli::EncryptArgs;
use crate::io;
use crate::ui::Terminal;
use p11smime::keyops::HashAlg;
use p11smime::smime::{
    self, Cipher, EncryptParams, EncryptRequest, KeyTransport, OutForm, SignParams,
};
use p11smime::token::KeySelector;
use p11smime::{Error, Result, certstore};

pub fn run(args: EncryptArgs) -> Result<()> {
    let pin = pin_source(&args.pin)?;
    let key: Option<KeySelector> = args.key.as_deref().map(str::parse).transpose()?;
    if args.json && args.output.is_none() {
        return Err(Error::Usage(
            "--json prints to stdout, so the encrypted output needs -o FILE".into(),
        ));
    }
    let from_stdin = io::is_stdin(args.input.as_deref());
    io::check_distinct(args.input.as_deref(), args.output.as_deref())?;
    let mut recipients = Vec::new();
    for r in args.recipients.iter().chain(&args.recipient_list) {
        recipients.extend(certstore::recipient(r)?);
    }
    let cipher = match args.cipher.as_str() {
        "aes128-cbc" => Cipher::Aes128Cbc,
        "aes192-cbc" => Cipher::Aes192Cbc,
        "aes128-gcm" => Cipher::Aes128Gcm,
        "aes256-gcm" => Cipher::Aes256Gcm,
        _ => Cipher::Aes256Cbc,
    };
    let key_transport = match args.oaep.as_deref() {
        Some("sha1") => KeyTransport::Oaep(HashAlg::Sha1),
        Some(_) => KeyTransport::Oaep(HashAlg::Sha256),
        None => KeyTransport::Pkcs1v15,
    };
    let outform = match args.outform.as_str() {
        "der" => OutForm::Der,
        "pem" => OutForm::Pem,
        _ => OutForm::Message,
    };
    // A file is read where it is (twice when large); stdin as it comes (spooled when large).
    let input = match args.input.as_deref().filter(|_| !from_stdin) {
        Some(path) => Some(
            std::fs::File::open(path)
                .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?,
        ),
        None => None,
    };

    let needs_token = args.sign || !args.no_self;
    // Without --sign the token is a convenience (the self copy, no PIN): a missing module is a
    // warning, and no agent is started for it.
    let mut agent = args.agent.clone();
    if !args.sign && agent.agent == "auto" {
        agent.agent = "use".into();
    }
    let (keys, selector) = match (needs_token, super::keys(&args.token, &args.pin, &agent)) {
        (false, _) => (None, None),
        (true, Ok((k, s))) => (Some(k), s),
        (true, Err(e)) if args.sign => return Err(e),
        (true, Err(_)) => (None, None),
    };
    let callbacks = Terminal {
        verbose: args.token.verbose,
    };
    let request = EncryptRequest {
        token: selector.as_ref(),
        login: super::login_options(pin.as_ref(), &args.pin, &callbacks),
        params: EncryptParams {
            recipients: &recipients,
            cipher,
            key_transport,
            outform,
            as_is: args.as_is,
        },
        self_copy: !args.no_self,
        sign: args.sign.then_some(SignParams {
            key: key.as_ref(),
            opaque: false,
            digest: None,
            pss: false,
            chain: &[],
            outform: OutForm::Message,
            as_is: args.as_is,
        }),
    };
    let outcome = io::with_output(args.output.as_ref(), |out| {
        let keys = keys.as_ref().map(|k| k.access());
        match &input {
            Some(file) => smime::encrypt_file(keys, file, &request, out),
            None => smime::encrypt_reader(keys, &mut std::io::stdin().lock(), &request, out),
        }
    })?;
    if args.token.verbose {
        eprintln!(
            "p11smime: encrypted ({}) to: {}",
            outcome.cipher,
            outcome.recipients.join("; ")
        );
    }
    if args.json {
        print_json(&outcome)?;
    }
    Ok(())
}

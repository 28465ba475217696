//! The terminal side of [`Callbacks`]: a PIN prompt and yes/no questions on the controlling
//! terminal, warnings and `--verbose` lines on stderr. With no terminal every question gets
//! "no answer", so nothing ever waits on input that will not come.

use p11smime::pin::Callbacks;
use secrecy::SecretString;
use std::io::{BufRead, Write};

pub struct Terminal {
    pub verbose: bool,
}

impl Callbacks for Terminal {
    fn request_pin(&self, prompt: &str) -> Option<SecretString> {
        // rpassword reads /dev/tty; with no controlling terminal it fails at once (ENXIO).
        rpassword::prompt_password(prompt)
            .ok()
            .map(SecretString::from)
    }

    fn confirm(&self, question: &str) -> Option<bool> {
        let tty = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .ok()?;
        let mut writer = &tty;
        write!(writer, "{question} [y/N] ").ok()?;
        writer.flush().ok()?;
        let mut answer = String::new();
        std::io::BufReader::new(&tty).read_line(&mut answer).ok()?;
        Some(matches!(answer.trim(), "y" | "Y" | "yes" | "YES"))
    }

    fn warn(&self, message: &str) {
        eprintln!("p11smime: warning: {message}");
    }

    fn verbose(&self, message: &str) {
        if self.verbose {
            eprintln!("p11smime: {message}");
        }
    }
}

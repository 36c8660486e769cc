//! `recengine keys …` and `recengine decrypt`: the command-line side of
//! encryption at rest (arguments, messages, exit codes). The work is in
//! [`super::tools`], [`super::keyring`] and [`super::customer`].

use std::path::PathBuf;
use std::process::ExitCode;

use super::customer::{CustomerPrivateKey, generate_x25519};
use super::keyring::{generate_key_file, write_new_file};
use super::tools::{Opener, decrypt, encryption_info_from_json, rewrap, sidecar_of};
use crate::config::Config;

#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// Write a new key-encryption key file: 32 random bytes, mode 0600.
    /// Name it in [[storage.encryption.keys]].
    Generate {
        /// The file to create (never overwritten).
        file: PathBuf,
    },
    /// Rewrap every stored recording's data key to the current key
    /// (storage.encryption.key_id); the audio files are not touched. Keep
    /// the old key configured until this reports nothing left under it.
    Rewrap {
        /// Configuration with [storage.encryption].
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Make an X25519 key pair for a customer-held key: register the public
    /// half (POST /v1/encryption-keys), keep the private half to decrypt.
    CustomerKeypair {
        /// Where the private key goes (PKCS#8 PEM, mode 0600; never
        /// overwritten).
        #[arg(long, value_name = "FILE")]
        private: PathBuf,
        /// Where the public key goes (PEM).
        #[arg(long, value_name = "FILE")]
        public: PathBuf,
    },
}

/// `recengine decrypt`.
#[derive(clap::Args)]
pub struct DecryptArgs {
    /// The encrypted recording (as stored, or as downloaded).
    pub file: PathBuf,
    /// Write the audio here ("-": standard output). Written to a temporary
    /// name and renamed only once every segment has been authenticated.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// The customer's private key (PEM), for a recording made with a
    /// registered customer key.
    #[arg(long, value_name = "PEM", conflicts_with = "config")]
    pub key: Option<PathBuf>,
    /// The operator's configuration, whose [storage.encryption] keys open
    /// recordings wrapped by them.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// JSON with the recording's `encryption`: its sidecar, its detail
    /// (GET /v1/recordings/{id}), or the download's Recengine-Encryption
    /// header. Default: the sidecar next to FILE.
    #[arg(long, value_name = "JSON")]
    pub info: Option<PathBuf>,
}

pub fn run_keys(command: KeysCommand) -> ExitCode {
    match command {
        KeysCommand::Generate { file } => match generate_key_file(&file) {
            Ok(()) => {
                println!("wrote a new key to {} (mode 0600)", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(format!("{}: {e}", file.display())),
        },
        KeysCommand::Rewrap { config } => {
            let cfg = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => return fail(e.to_string()),
            };
            match rewrap(&cfg) {
                Ok(r) => {
                    println!(
                        "rewrapped {} data key(s) to key {:?}; {} already under it; {} customer-held (not the operator's to move)",
                        r.rewrapped, r.key_id, r.already_current, r.customer_held
                    );
                    for id in &r.in_progress {
                        println!(
                            "still recording: {id} (finishes under its starting key; run rewrap again later)"
                        );
                    }
                    for (id, why) in &r.failed {
                        eprintln!("FAILED {id}: {why}");
                    }
                    if r.failed.is_empty() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => fail(e.to_string()),
            }
        }
        KeysCommand::CustomerKeypair { private, public } => {
            let (sk, pk) = match generate_x25519() {
                Ok(k) => k,
                Err(e) => return fail(e.to_string()),
            };
            if let Err(e) = write_new_file(&private, sk.as_bytes(), 0o600) {
                return fail(format!("{}: {e}", private.display()));
            }
            if let Err(e) = write_new_file(&public, pk.as_bytes(), 0o644) {
                return fail(format!("{}: {e}", public.display()));
            }
            println!(
                "private key: {} (keep it; it is the only way to listen)\npublic key:  {} (register it: POST /v1/encryption-keys)",
                private.display(),
                public.display()
            );
            ExitCode::SUCCESS
        }
    }
}

pub fn run_decrypt(args: DecryptArgs) -> ExitCode {
    let info_path = args.info.clone().unwrap_or_else(|| sidecar_of(&args.file));
    let info = match std::fs::read_to_string(&info_path)
        .map_err(|e| format!("{}: {e} (give --info)", info_path.display()))
        .and_then(|t| encryption_info_from_json(&t).map_err(|e| e.to_string()))
    {
        Ok(i) => i,
        Err(e) => return fail(e),
    };
    let opener = match (&args.key, &args.config) {
        (Some(pem), _) => match std::fs::read_to_string(pem)
            .map_err(|e| format!("{}: {e}", pem.display()))
            .and_then(|t| CustomerPrivateKey::from_pem(&t).map_err(|e| e.to_string()))
        {
            Ok(k) => Opener::Customer(k),
            Err(e) => return fail(e),
        },
        (None, Some(config)) => match Config::load(config)
            .map_err(|e| e.to_string())
            .and_then(|c| super::Keyring::load(&c.storage.encryption).map_err(|e| e.to_string()))
        {
            Ok(k) => Opener::Operator(k),
            Err(e) => return fail(e),
        },
        (None, None) => {
            return fail("give --key (a customer's private key) or --config (the operator's keys)");
        }
    };
    if args.output.as_os_str() == "-" {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        return match decrypt(&args.file, &info, &opener, &mut out) {
            Ok((len, sha)) => {
                eprintln!("decrypted {len} bytes, sha256 {sha}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e.to_string()),
        };
    }
    let mut tmp = args.output.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = PathBuf::from(tmp);
    let result = std::fs::File::create(&tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))
        .and_then(|f| {
            let mut w = std::io::BufWriter::new(f);
            decrypt(&args.file, &info, &opener, &mut w).map_err(|e| e.to_string())
        });
    match result.and_then(|r| {
        std::fs::rename(&tmp, &args.output)
            .map(|()| r)
            .map_err(|e| format!("{}: {e}", args.output.display()))
    }) {
        Ok((len, sha)) => {
            println!(
                "decrypted {} → {} ({len} bytes, sha256 {sha})",
                args.file.display(),
                args.output.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            fail(e)
        }
    }
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("recengine: {message}");
    ExitCode::FAILURE
}

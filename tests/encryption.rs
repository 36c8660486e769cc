//! Encryption at rest against the running daemon: nothing readable on
//! disk while recording or after, downloads decrypted sample for sample
//! (Range across segment borders, HEAD, ETag), a flipped byte refused, a
//! kill -9 recovered from the encrypted part file, key files checked at
//! start, rewrap to a new key, and customer-held keys (X25519 and RSA)
//! decrypted offline by `recengine decrypt`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use recengine::core::decode::{linear_to_ulaw, ulaw_to_linear};
use recengine::encryption::keyring::generate_key_file;
use serde_json::{Value, json};
use support::*;

const SECOND: Duration = Duration::from_secs(1);
const SEGMENT: usize = recengine::encryption::segments::SEGMENT_SIZE;

fn key_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("keys-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn new_key(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    generate_key_file(&p).unwrap();
    p
}

/// `[storage.encryption]` with `keys` (id, file), wrapping with `current`.
fn encryption(keys: &[(&str, &Path)], current: &str) -> String {
    let list: Vec<String> = keys
        .iter()
        .map(|(id, p)| format!("{{ id = \"{id}\", file = \"{}\" }}", p.display()))
        .collect();
    format!(
        "[storage.encryption]\nenabled = true\nkey_id = \"{current}\"\nkeys = [{}]\n",
        list.join(", ")
    )
}

/// Runs the `recengine` command line with `args`.
fn recengine(args: &[&dyn AsRef<std::ffi::OsStr>]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_recengine"))
        .args(args.iter().map(|a| a.as_ref()))
        .output()
        .unwrap()
}

/// What the recording of `signal` sent as PCMU holds.
fn through_ulaw(signal: &[i16]) -> Vec<i16> {
    signal
        .iter()
        .map(|&s| ulaw_to_linear(linear_to_ulaw(s)))
        .collect()
}

fn pcm_bytes(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// Fails if `stored` holds any sign of plaintext: a container signature,
/// or any 24-byte stretch of `plain` (sampled every 251 bytes).
fn assert_no_plaintext(stored: &[u8], plain: &[u8], what: &str) {
    assert!(
        stored.starts_with(&recengine::encryption::segments::MAGIC),
        "{what}: not an encrypted file"
    );
    for sig in [
        &b"RIFF"[..],
        b"WAVEfmt ",
        b"OggS\0",
        b"OpusHead",
        b"ID3\x03\0",
        b"ID3\x04\0",
        b"LAME3",
    ] {
        assert!(
            !stored.windows(sig.len()).any(|w| w == sig),
            "{what}: holds {:?}",
            String::from_utf8_lossy(sig)
        );
    }
    let mut checked = 0;
    for at in (0..plain.len().saturating_sub(24)).step_by(251) {
        let needle = &plain[at..at + 24];
        if needle.iter().all(|&b| b == needle[0]) {
            continue; // silence is not evidence
        }
        assert!(
            !stored.windows(24).any(|w| w == needle),
            "{what}: plaintext bytes {at}..{} are on disk",
            at + 24
        );
        checked += 1;
    }
    assert!(checked > 10, "{what}: too little plaintext to compare");
}

fn find_files(dir: &Path, suffix: &str, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            find_files(&p, suffix, out);
        } else if p.to_string_lossy().ends_with(suffix) {
            out.push(p);
        }
    }
}

/// Where `expected` starts in `got`, if it is there sample for sample.
fn position_of(got: &[i16], expected: &[i16]) -> Option<usize> {
    (0..=got.len().saturating_sub(expected.len()))
        .find(|&k| got[k..k + expected.len()] == *expected)
}

/// The signed URL of a call's latest recording, for `token`.
fn file_url(d: &Daemon, call_id: &str, token: &str) -> String {
    let (s, link) = d.request(
        "GET",
        &format!("/v1/calls/{call_id}/recording"),
        None,
        Some(token),
    );
    assert_eq!(s, 200, "{link}");
    link["url"].as_str().expect("a signed url").to_owned()
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Creates a one-leg call recording `format` for `token`, streams
/// `signal` to it (calling `at` per packet), ends it, and returns (call
/// id, recording.completed data).
fn record(
    d: &Daemon,
    token: &str,
    format: &str,
    signal: &[i16],
    at: impl FnMut(usize),
) -> (String, Value) {
    let mut ev = d.events(None);
    std::thread::sleep(Duration::from_millis(100));
    let body =
        json!({"legs": [{"role": "caller"}], "recording": {"enabled": true, "format": format}});
    let (s, call) = d.request("POST", "/v1/calls", Some(&body.to_string()), Some(token));
    assert_eq!(s, 201, "{call}");
    let sock = udp();
    stream(
        &[Leg {
            port: leg_port(&call, "caller"),
            ssrc: 7,
            signal,
            socket: &sock,
            delay_packets: 0,
        }],
        at,
    );
    let id = call["call_id"].as_str().unwrap().to_owned();
    let (s, _) = d.request("POST", &format!("/v1/calls/{id}/end"), None, Some(token));
    assert_eq!(s, 200);
    let events = ev.until("recording.completed", 10 * SECOND);
    (id, events.last().unwrap()["data"].clone())
}

#[test]
fn recordings_are_sealed_on_disk_and_served_decrypted_sample_for_sample() {
    let keys = key_dir("sealed");
    let k1 = new_key(&keys, "kek-1.key");
    let d = Daemon::start("encrypted", &encryption(&[("kek-1", &k1)], "kek-1"));
    let speech = recengine::testkit::speech(8000, 8000 * 6);
    let sent = through_ulaw(&speech);
    let storage = d.storage();
    let mut part = None;
    let (call_id, done) = record(&d, ADMIN, "wav", &speech, |i| {
        // Five seconds in (many flushes, more than one 64 KiB segment of
        // 8 kHz 16-bit audio), the part file holds no plaintext. It is
        // copied here and searched after the call, so the sender does not
        // stall past the playout delay.
        if i == 250 {
            let mut parts = Vec::new();
            find_files(&storage, ".wav.part", &mut parts);
            assert_eq!(parts.len(), 1, "{parts:?}");
            part = Some(std::fs::read(&parts[0]).unwrap());
        }
    });
    let part = part.expect("the part file was read mid-call");
    assert!(part.len() > SEGMENT, "{} bytes", part.len());
    assert_no_plaintext(&part, &pcm_bytes(&sent[..8000 * 4]), "the part file");
    let path = PathBuf::from(done["path"].as_str().unwrap());
    let stored = std::fs::read(&path).unwrap();

    // The download is the audio, as sent.
    let url = file_url(&d, &call_id, ADMIN);
    let (s, head, wav) = d.request_with_head("GET", &url, None, None, &[]);
    assert_eq!(s, 200, "{head}");
    assert_eq!(header(&head, "content-type"), Some("audio/wav"));
    assert_eq!(wav.len() as u64, done["file_size_bytes"].as_u64().unwrap());
    assert_eq!(
        recengine::crypto::sha256_hex(&wav),
        done["checksum"]["value"].as_str().unwrap(),
        "the checksum is the plaintext's"
    );
    assert_eq!(
        header(&head, "etag").map(|e| e.trim_matches('"')),
        done["checksum"]["value"].as_str()
    );
    let plain_path = d.dir.join("downloaded.wav");
    std::fs::write(&plain_path, &wav).unwrap();
    let (samples, channels, rate) = read_wav(&plain_path);
    assert_eq!((channels, rate), (1, 8000));
    let at = position_of(&samples, &sent).expect("every sent sample, in order");
    assert!(at < 8000, "{at} samples of lead-in");
    assert_no_plaintext(&stored, &wav, "the finished file");

    // Ranges across segment borders decrypt to the same bytes; HEAD
    // answers the plaintext's size.
    for (a, b) in [
        (SEGMENT - 10, SEGMENT + 10),
        (0, 43),
        (SEGMENT - 1, wav.len() - 2),
        (wav.len() - 5, wav.len() - 1),
    ] {
        let range = format!("bytes={a}-{b}");
        let (s, head, part) = d.request_with_head("GET", &url, None, None, &[("Range", &range)]);
        assert_eq!(s, 206, "{range}: {head}");
        assert_eq!(part, wav[a..=b], "{range}");
    }
    let (s, head, body) = d.request_with_head("HEAD", &url, None, None, &[]);
    assert_eq!((s, body.len()), (200, 0));
    assert_eq!(
        header(&head, "content-length"),
        Some(wav.len().to_string().as_str())
    );

    // The detail and the sidecar say how it is sealed, with the stored
    // bytes' hash; no plain key anywhere.
    let rec = done["recording_id"].as_str().unwrap();
    let (_, detail) = d.admin("GET", &format!("/v1/recordings/{rec}"), None);
    let enc = &detail["encryption"];
    assert_eq!(enc["scheme"], "aes-256-gcm-segmented-v1", "{detail}");
    assert_eq!(
        (enc["wrapping"].as_str(), enc["key_id"].as_str()),
        (Some("kek"), Some("kek-1"))
    );
    assert_eq!(
        enc["stored_sha256"].as_str(),
        Some(sha256_file(&path).as_str())
    );
    assert_eq!(enc["stored_size_bytes"].as_u64(), Some(stored.len() as u64));
    let sidecar: Value =
        serde_json::from_slice(&std::fs::read(path.with_extension("json")).unwrap()).unwrap();
    assert_eq!(sidecar["encryption"], *enc);

    // The operator can decrypt offline with the configured keys.
    let out = d.dir.join("offline.wav");
    let run = recengine(&[
        &"decrypt",
        &"-c",
        &d.dir.join("engine.toml"),
        &"-o",
        &out,
        &path,
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(std::fs::read(&out).unwrap(), wav);

    // MP3 too: no frame of it is on disk.
    let (call2, done2) = record(&d, ADMIN, "mp3", &speech[..8000 * 2], |_| {});
    let url2 = file_url(&d, &call2, ADMIN);
    let (s, head, mp3) = d.request_with_head("GET", &url2, None, None, &[]);
    assert_eq!(
        (s, header(&head, "content-type")),
        (200, Some("audio/mpeg"))
    );
    let stored2 = std::fs::read(done2["path"].as_str().unwrap()).unwrap();
    assert_no_plaintext(&stored2, &mp3, "the MP3 file");

    // A flipped byte is refused, never served as other audio: in the
    // first segment (read before the answer starts) and in the last (read
    // when the file is opened).
    for at in [100, stored.len() - 100] {
        let mut bad = stored.clone();
        bad[at] ^= 0x20;
        std::fs::write(&path, &bad).unwrap();
        let (s, err) = d.request("GET", &url, None, None);
        assert_eq!(
            (s, err["error"]["code"].as_str()),
            (500, Some("file_corrupt")),
            "flip at {at}: {err}"
        );
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap()
                .contains("failed authentication")
        );
    }
    std::fs::write(&path, &stored).unwrap();

    // The audit trail says the file was decrypted for a signed URL.
    let (_, audit) = d.admin("GET", &format!("/v1/audit?recording_id={rec}"), None);
    assert!(
        audit["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["action"] == "recording.decrypt" && r["status"] == 200),
        "{audit}"
    );
}

#[test]
fn kill_9_mid_recording_is_recovered_from_the_encrypted_part_file() {
    let keys = key_dir("kill9");
    let k1 = new_key(&keys, "kek-1.key");
    let extra = encryption(&[("kek-1", &k1)], "kek-1");
    let mut d = Daemon::start("encrypted-kill9", &extra);
    let body =
        json!({"legs": [{"role": "caller"}], "recording": {"enabled": true, "format": "wav"}});
    let (s, call) = d.admin("POST", "/v1/calls", Some(&body.to_string()));
    assert_eq!(s, 201, "{call}");
    let speech = recengine::testkit::speech(8000, 8000 * 4);
    let sock = udp();
    stream(
        &[Leg {
            port: leg_port(&call, "caller"),
            ssrc: 9,
            signal: &speech,
            socket: &sock,
            delay_packets: 0,
        }],
        |_| {},
    );
    // Past the flush interval (200 ms), then the process dies.
    std::thread::sleep(Duration::from_millis(600));
    let rec = call["recording"]["recording_id"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| {
            let (_, list) = d.admin("GET", "/v1/recordings", None);
            list["data"][0]["recording_id"].as_str().unwrap().to_owned()
        });
    d.kill9();
    let mut parts = Vec::new();
    find_files(&d.storage(), ".wav.part", &mut parts);
    assert_eq!(parts.len(), 1, "a part file is left: {parts:?}");
    assert_no_plaintext(
        &std::fs::read(&parts[0]).unwrap(),
        &pcm_bytes(&through_ulaw(&speech[..8000 * 3])),
        "the part file a crash left",
    );

    let d = Daemon::launch("encrypted-kill9", &d.dir.clone(), &extra, 4);
    let (s, detail) = d.admin("GET", &format!("/v1/recordings/{rec}"), None);
    assert_eq!(s, 200, "{detail}");
    assert_eq!(detail["status"], "completed", "{detail}");
    assert_eq!(detail["recovered"], true);
    assert!(
        detail["encryption"]["stored_sha256"].is_string(),
        "{detail}"
    );
    let path = PathBuf::from(
        detail["file"]
            .as_str()
            .or(detail["path"].as_str())
            .unwrap_or_default(),
    );
    let mut finals = Vec::new();
    find_files(&d.storage(), ".wav", &mut finals);
    assert_eq!(finals.len(), 1, "{finals:?} {path:?}");
    let call_id = call["call_id"].as_str().unwrap();
    let url = file_url(&d, call_id, ADMIN);
    let (s, wav) = d.request_raw("GET", &url, None, None, &[]);
    assert_eq!(s, 200);
    assert_eq!(
        recengine::crypto::sha256_hex(&wav),
        detail["checksum"]["value"].as_str().unwrap()
    );
    let out = d.dir.join("recovered.wav");
    std::fs::write(&out, &wav).unwrap();
    let (samples, _, _) = read_wav(&out);
    // Everything up to the last flush before the kill: all four seconds
    // were sent well before it.
    let sent = through_ulaw(&speech);
    let at = position_of(&samples, &sent[..8000 * 3]).expect("the sent audio, sample for sample");
    assert!(samples.len() >= at + 8000 * 3);
    assert_no_plaintext(
        &std::fs::read(&finals[0]).unwrap(),
        &wav,
        "the recovered file",
    );
}

fn run_daemon_expecting_failure(config: &Path) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_recengine"))
        .args(["run", "-c"])
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + 15 * SECOND;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(!status.success());
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return err;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the daemon started with a bad key");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Rewrites the daemon's config with another `[storage.encryption]`.
fn with_encryption(dir: &Path, section: &str) -> PathBuf {
    let text = std::fs::read_to_string(dir.join("engine.toml")).unwrap();
    let mut table: toml::Table = toml::from_str(&text).unwrap();
    let over: toml::Table = toml::from_str(section).unwrap();
    table["storage"]
        .as_table_mut()
        .unwrap()
        .insert("encryption".into(), over["storage"]["encryption"].clone());
    let path = dir.join("engine-next.toml");
    std::fs::write(&path, toml::to_string(&table).unwrap()).unwrap();
    path
}

#[test]
fn wrong_or_missing_keys_stop_the_start_and_rewrap_moves_every_data_key() {
    use std::os::unix::fs::PermissionsExt;
    let keys = key_dir("rotate");
    let k1 = new_key(&keys, "kek-1.key");
    let k2 = new_key(&keys, "kek-2.key");
    let mut d = Daemon::start("encrypted-rotate", &encryption(&[("kek-1", &k1)], "kek-1"));
    let tone = recengine::testkit::tone(8000, 440.0, 6000.0, 8000);
    let (call_id, done) = record(&d, ACME, "wav", &tone, |_| {});
    let rec = done["recording_id"].as_str().unwrap().to_owned();
    let (_, before) = d.request_raw("GET", &file_url(&d, &call_id, ACME), None, None, &[]);
    assert!(d.terminate().success());
    let dir = d.dir.clone();

    // Another file under the same id.
    let impostor = new_key(&keys, "impostor.key");
    let cfg = with_encryption(&dir, &encryption(&[("kek-1", &impostor)], "kek-1"));
    let err = run_daemon_expecting_failure(&cfg);
    assert!(
        err.contains("\"kek-1\"") && err.contains("check value"),
        "{err}"
    );
    // The key its recordings need, gone from the config.
    let cfg = with_encryption(&dir, &encryption(&[("kek-2", &k2)], "kek-2"));
    let err = run_daemon_expecting_failure(&cfg);
    assert!(
        err.contains("\"kek-1\"") && err.contains("not configured"),
        "{err}"
    );
    // A key file others can read, or one that is not there.
    std::fs::set_permissions(&k1, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cfg = with_encryption(&dir, &encryption(&[("kek-1", &k1)], "kek-1"));
    let err = run_daemon_expecting_failure(&cfg);
    assert!(
        err.contains("\"kek-1\"") && err.contains("chmod 600"),
        "{err}"
    );
    std::fs::set_permissions(&k1, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cfg = with_encryption(
        &dir,
        &encryption(&[("kek-1", &keys.join("gone.key"))], "kek-1"),
    );
    let err = run_daemon_expecting_failure(&cfg);
    assert!(
        err.contains("\"kek-1\"") && err.contains("gone.key"),
        "{err}"
    );

    // Rotate: kek-2 current, kek-1 still listed; rewrap moves the data key.
    let cfg = with_encryption(
        &dir,
        &encryption(&[("kek-1", &k1), ("kek-2", &k2)], "kek-2"),
    );
    let path = PathBuf::from(done["path"].as_str().unwrap());
    let audio_before = std::fs::read(&path).unwrap();
    let run = recengine(&[&"keys", &"rewrap", &"-c", &cfg]);
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        out.contains("rewrapped 1 data key(s) to key \"kek-2\""),
        "{out}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        audio_before,
        "the audio is not touched"
    );
    let sidecar: Value =
        serde_json::from_slice(&std::fs::read(path.with_extension("json")).unwrap()).unwrap();
    assert_eq!(sidecar["encryption"]["key_id"], "kek-2");

    // kek-1 can go now.
    let only2 = encryption(&[("kek-2", &k2)], "kek-2");
    let d = Daemon::launch("encrypted-rotate", &dir, &only2, 4);
    let (_, detail) = d.request("GET", &format!("/v1/recordings/{rec}"), None, Some(ACME));
    assert_eq!(detail["encryption"]["key_id"], "kek-2", "{detail}");
    let (s, after) = d.request_raw("GET", &file_url(&d, &call_id, ACME), None, None, &[]);
    assert_eq!(s, 200);
    assert_eq!(after, before);
}

#[test]
fn customer_held_keys_leave_only_the_customer_able_to_listen() {
    let keys = key_dir("customer");
    let k1 = new_key(&keys, "kek-1.key");
    let d = Daemon::start(
        "encrypted-customer",
        &encryption(&[("kek-1", &k1)], "kek-1"),
    );

    // ACME makes an X25519 key pair and registers the public half.
    let (private, public) = (keys.join("acme.pem"), keys.join("acme.pub.pem"));
    let run = recengine(&[
        &"keys",
        &"customer-keypair",
        &"--private",
        &private,
        &"--public",
        &public,
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let pem = std::fs::read_to_string(&public).unwrap();
    let (s, key) = d.request(
        "POST",
        "/v1/encryption-keys",
        Some(&json!({"public_key": pem}).to_string()),
        Some(ACME),
    );
    assert_eq!(s, 201, "{key}");
    assert_eq!(
        (key["algorithm"].as_str(), key["active"].as_bool()),
        (Some("x25519"), Some(true))
    );
    let (s, err) = d.request(
        "POST",
        "/v1/encryption-keys",
        Some(
            &json!({"public_key": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"})
                .to_string(),
        ),
        Some(ACME),
    );
    assert_eq!(
        (s, err["error"]["code"].as_str()),
        (400, Some("invalid_public_key")),
        "{err}"
    );
    // GLOBEX registers an RSA key.
    let rsa = include_str!("fixtures/customer-rsa-public.pem");
    let (s, _) = d.request(
        "POST",
        "/v1/encryption-keys",
        Some(&json!({"public_key": rsa}).to_string()),
        Some(GLOBEX),
    );
    assert_eq!(s, 201);
    let (_, listed) = d.request("GET", "/v1/encryption-keys", None, Some(ACME));
    assert_eq!(
        listed["data"].as_array().unwrap().len(),
        1,
        "tenants see their own keys: {listed}"
    );

    let speech = recengine::testkit::speech(8000, 8000 * 2);
    let sent = through_ulaw(&speech);
    for (token, private_key, wrapping) in [
        (ACME, private.clone(), "customer-x25519"),
        (
            GLOBEX,
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/customer-rsa-private.pem"
            )),
            "customer-rsa-oaep-sha256",
        ),
    ] {
        let (call_id, done) = record(&d, token, "wav", &speech, |_| {});
        let rec = done["recording_id"].as_str().unwrap();
        let (_, detail) = d.request("GET", &format!("/v1/recordings/{rec}"), None, Some(token));
        assert_eq!(detail["encryption"]["wrapping"], wrapping, "{detail}");
        // The download is the ciphertext as stored, with the wrapped key.
        let url = file_url(&d, &call_id, token);
        let (s, head, body) = d.request_with_head("GET", &url, None, None, &[]);
        assert_eq!(s, 200, "{head}");
        assert_eq!(
            header(&head, "content-type"),
            Some("application/octet-stream")
        );
        let stored = std::fs::read(done["path"].as_str().unwrap()).unwrap();
        assert_eq!(body, stored);
        assert_eq!(
            header(&head, "etag").map(|e| e.trim_matches('"').to_owned()),
            detail["encryption"]["stored_sha256"]
                .as_str()
                .map(str::to_owned)
        );
        let info: Value =
            serde_json::from_str(header(&head, "recengine-encryption").expect("the wrapped key"))
                .unwrap();
        assert_eq!(info, detail["encryption"]);
        let (file, info_path) = (
            d.dir.join(format!("{rec}.wav.enc")),
            d.dir.join(format!("{rec}.key.json")),
        );
        std::fs::write(&file, &body).unwrap();
        std::fs::write(&info_path, info.to_string()).unwrap();

        // Only the customer's private key opens it…
        let out = d.dir.join(format!("{rec}.wav"));
        let run = recengine(&[
            &"decrypt",
            &"--key",
            &private_key,
            &"--info",
            &info_path,
            &"-o",
            &out,
            &file,
        ]);
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let (samples, _, _) = read_wav(&out);
        assert!(
            position_of(&samples, &sent).is_some(),
            "every sent sample, in order"
        );
        assert_eq!(
            recengine::crypto::sha256_hex(&std::fs::read(&out).unwrap()),
            done["checksum"]["value"].as_str().unwrap()
        );
        // …not the operator's keys.
        let run = recengine(&[
            &"decrypt",
            &"-c",
            &d.dir.join("engine.toml"),
            &"--info",
            &info_path,
            &"-o",
            &d.dir.join("operator.wav"),
            &file,
        ]);
        assert!(!run.status.success());
        assert!(
            String::from_utf8_lossy(&run.stderr).contains("customer's own key"),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        assert!(!d.dir.join("operator.wav").exists());
        assert_no_plaintext(
            &stored,
            &std::fs::read(&out).unwrap(),
            "a customer-held file",
        );
    }

    // Revoked: later recordings are the operator's again.
    let key_id = key["key_id"].as_str().unwrap();
    let (s, revoked) = d.request(
        "DELETE",
        &format!("/v1/encryption-keys/{key_id}"),
        None,
        Some(ACME),
    );
    assert_eq!(
        (s, revoked["active"].as_bool()),
        (200, Some(false)),
        "{revoked}"
    );
    let (_, done) = record(&d, ACME, "wav", &speech, |_| {});
    let rec = done["recording_id"].as_str().unwrap();
    let (_, detail) = d.request("GET", &format!("/v1/recordings/{rec}"), None, Some(ACME));
    assert_eq!(detail["encryption"]["wrapping"], "kek", "{detail}");
    // Deleting a recording destroys its wrapped key with the file: a copy
    // of the file kept elsewhere stays sealed for good.
    let (s, deleted) = d.request("DELETE", &format!("/v1/recordings/{rec}"), None, Some(ACME));
    assert_eq!(s, 200, "{deleted}");
    let (_, detail) = d.request("GET", &format!("/v1/recordings/{rec}"), None, Some(ACME));
    assert_eq!(detail["status"], "deleted");
    assert_eq!(detail["encryption"]["key_id"], "kek-1", "{detail}");
    assert!(
        detail["encryption"].get("wrapped_key").is_none(),
        "{detail}"
    );
    let (s, err) = d.request("DELETE", "/v1/encryption-keys/ck-nope", None, Some(ACME));
    assert_eq!(
        (s, err["error"]["code"].as_str()),
        (404, Some("encryption_key_not_found"))
    );
}

#[test]
fn customer_keys_need_encryption_on() {
    let d = Daemon::start("unencrypted-customer-key", "");
    let rsa = include_str!("fixtures/customer-rsa-public.pem");
    let (s, err) = d.request(
        "POST",
        "/v1/encryption-keys",
        Some(&json!({"public_key": rsa}).to_string()),
        Some(ACME),
    );
    assert_eq!(
        (s, err["error"]["code"].as_str()),
        (409, Some("encryption_disabled")),
        "{err}"
    );
    // And recordings stay plain files, as before.
    let tone = recengine::testkit::tone(8000, 440.0, 6000.0, 4000);
    let (_, done) = record(&d, ACME, "wav", &tone, |_| {});
    let stored = std::fs::read(done["path"].as_str().unwrap()).unwrap();
    assert!(stored.starts_with(b"RIFF"));
}

//! Running out of file descriptors (issue #13.5): `PortPool::allocate`
//! used to quarantine every free port pair on `EMFILE`, so creates kept
//! failing with `ports_exhausted` long after the descriptors came back.
//! This test binary lowers its own open-file limit, which is why it holds
//! this one test only.

use std::net::{IpAddr, UdpSocket};
use std::time::Duration;

use recengine::io::ports::{AllocateError, PortPool};

#[test]
fn out_of_descriptors_quarantines_no_port() {
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    let base = 45_000 + (std::process::id() % 400) as u16 * 8;
    let mut pool = PortPool::new(ip, base, base + 8, Duration::from_secs(60));
    // Use up every descriptor this process may have.
    let limit = libc::rlimit {
        rlim_cur: 64,
        rlim_max: 64,
    };
    // SAFETY: setrlimit with a valid rlimit; only this test's process.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    let mut hog = Vec::new();
    while let Ok(s) = UdpSocket::bind((ip, 0)) {
        hog.push(s);
    }
    match pool.allocate(Duration::ZERO) {
        Err(AllocateError::Resources(e)) => {
            assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e}")
        }
        other => panic!("{other:?}"),
    }
    // Descriptors back: every pair is still there, the first one first.
    hog.clear();
    let pairs: Vec<u16> = (0..4)
        .map(|_| pool.allocate(Duration::ZERO).unwrap().port)
        .collect();
    assert_eq!(pairs, [base, base + 2, base + 4, base + 6]);
}

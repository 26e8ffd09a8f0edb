//! Who is at the other end of a connection: the peer's uid from the kernel
//! (`SO_PEERCRED` on Linux, `getpeereid` on other Unix systems), and whether
//! it may operate the store: only the uid this process runs as, and root.

use std::os::unix::net::UnixStream;

/// Whether a peer is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The store's owner or root.
    Serve,
    /// Anyone else, or a peer whose credentials cannot be read: the message
    /// of the one refusal line it gets.
    Refuse(String),
}

/// Judges the peer of `stream`.
pub(crate) fn check(stream: &UnixStream) -> Verdict {
    let owner = rustix::process::geteuid().as_raw();
    match peer_uid(stream) {
        Ok(uid) => decide(uid, owner),
        Err(e) => Verdict::Refuse(format!("cannot read the peer's credentials: {e}")),
    }
}

/// The rule: the owner's uid and root are served, nobody else.
pub(crate) fn decide(peer: u32, owner: u32) -> Verdict {
    if peer == owner || peer == 0 {
        Verdict::Serve
    } else {
        Verdict::Refuse(format!(
            "uid {peer} may not operate this store: only its owner (uid {owner}) and root may"
        ))
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn peer_uid(stream: &UnixStream) -> std::io::Result<u32> {
    Ok(rustix::net::sockopt::socket_peercred(stream)?.uid.as_raw())
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
#[expect(unsafe_code, reason = "getpeereid has no safe wrapper in rustix")]
fn peer_uid(stream: &UnixStream) -> std::io::Result<u32> {
    use std::os::fd::AsRawFd as _;
    let mut uid: libc::uid_t = 0;
    let mut gid: libc::gid_t = 0;
    // SAFETY: `getpeereid` writes one uid and one gid through the two
    // pointers, which point to live locals of those types; the descriptor is
    // borrowed from `stream`, open for the whole call.
    let rc = unsafe { libc::getpeereid(stream.as_raw_fd(), &mut uid, &mut gid) };
    if rc == 0 {
        Ok(uid)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_owner_and_root_are_served() {
        assert_eq!(decide(1000, 1000), Verdict::Serve);
        assert_eq!(decide(0, 1000), Verdict::Serve);
        assert_eq!(decide(0, 0), Verdict::Serve);
        let Verdict::Refuse(why) = decide(65534, 1000) else {
            panic!("nobody was served");
        };
        assert!(why.contains("65534") && why.contains("1000"), "{why}");
        assert!(matches!(decide(1000, 0), Verdict::Refuse(_)));
    }

    #[test]
    fn a_peer_in_this_process_is_its_owner() {
        let (a, _b) = UnixStream::pair().unwrap();
        assert_eq!(check(&a), Verdict::Serve);
    }
}

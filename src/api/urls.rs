//! Signed download URLs:
//! `/v1/files/{id}?customer=<c>&expires=<unix>&by=<issuer>&sig=<hex>` where
//! `sig = HMAC-SHA256(secret, "{c}/{id}:{expires}:{issuer}")` (the admin's
//! own recordings: no `customer`, and `"{id}:{expires}:{issuer}"`). The
//! issuer is the name of the token that asked for the URL, so the audit
//! trail can say whose URL fetched a file; URLs made before issuers were
//! signed (no `by`) verify as `"{c}/{id}:{expires}"` until they expire.
//! Anyone holding the URL may fetch the file until it expires; changing
//! the customer, the id, the expiry or the issuer breaks the signature.

use std::time::Duration;

use crate::crypto::{hex, hmac_sha256};
use crate::engine::scoped_key;

#[derive(Clone)]
pub struct UrlSigner {
    secret: Vec<u8>,
    lifetime: Duration,
}

/// Why a signed URL is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlRefused {
    Expired,
    BadSignature,
}

impl UrlSigner {
    pub fn new(secret: Vec<u8>, lifetime: Duration) -> Self {
        Self { secret, lifetime }
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    fn signature(
        &self,
        customer: Option<&str>,
        id: &str,
        expires: u64,
        by: Option<&str>,
    ) -> String {
        let key = scoped_key(customer, id);
        let message = match by {
            Some(by) => format!("{key}:{expires}:{by}"),
            None => format!("{key}:{expires}"),
        };
        hex(&hmac_sha256(&self.secret, message.as_bytes()))
    }

    /// A URL for the customer's recording `id`, asked for by the token
    /// named `by`, valid for the configured lifetime from `now` (Unix).
    pub fn sign(&self, customer: Option<&str>, id: &str, now: Duration, by: &str) -> (String, u64) {
        let expires = (now + self.lifetime).as_secs();
        let sig = self.signature(customer, id, expires, Some(by));
        let by: String = form_urlencoded::byte_serialize(by.as_bytes()).collect();
        let url = match customer {
            Some(c) => {
                format!("/v1/files/{id}?customer={c}&expires={expires}&by={by}&sig={sig}")
            }
            None => format!("/v1/files/{id}?expires={expires}&by={by}&sig={sig}"),
        };
        (url, expires)
    }

    pub fn verify(
        &self,
        customer: Option<&str>,
        id: &str,
        expires: u64,
        by: Option<&str>,
        sig: &str,
        now: Duration,
    ) -> Result<(), UrlRefused> {
        let want = self.signature(customer, id, expires, by);
        let same = want.len() == sig.len()
            && want
                .bytes()
                .zip(sig.bytes())
                .fold(0u8, |a, (x, y)| a | (x ^ y))
                == 0;
        if !same {
            return Err(UrlRefused::BadSignature);
        }
        if now.as_secs() > expires {
            return Err(UrlRefused::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn tampering_and_expiry_are_refused() {
        let s = UrlSigner::new(b"secret".to_vec(), Duration::from_secs(60));
        let now = Duration::from_secs(1_000_000);
        let (url, expires) = s.sign(None, "rec-1", now, "pbx 1");
        let sig = url.rsplit("sig=").next().unwrap();
        assert_eq!(
            s.verify(None, "rec-1", expires, Some("pbx 1"), sig, now),
            Ok(())
        );
        assert_eq!(
            s.verify(None, "rec-2", expires, Some("pbx 1"), sig, now),
            Err(UrlRefused::BadSignature)
        );
        assert_eq!(
            s.verify(None, "rec-1", expires + 1, Some("pbx 1"), sig, now),
            Err(UrlRefused::BadSignature)
        );
        assert_eq!(
            s.verify(
                None,
                "rec-1",
                expires,
                Some("pbx 1"),
                sig,
                now + Duration::from_secs(61)
            ),
            Err(UrlRefused::Expired)
        );
        assert_eq!(
            s.verify(None, "rec-1", expires, Some("someone else"), sig, now),
            Err(UrlRefused::BadSignature),
            "the issuer is signed"
        );
        assert!(url.contains("&by=pbx+1&"), "{url}");
    }

    /// A URL for one customer's recording opens no other customer's
    /// recording of the same id, nor the admin's.
    #[test]
    fn the_customer_is_signed() {
        let s = UrlSigner::new(b"secret".to_vec(), Duration::from_secs(60));
        let now = Duration::from_secs(1_000_000);
        let (url, expires) = s.sign(Some("acme"), "rec-1", now, "pbx 1");
        assert!(
            url.starts_with("/v1/files/rec-1?customer=acme&expires="),
            "{url}"
        );
        let sig = url.rsplit("sig=").next().unwrap();
        assert_eq!(
            s.verify(Some("acme"), "rec-1", expires, Some("pbx 1"), sig, now),
            Ok(())
        );
        for customer in [Some("globex"), None] {
            assert_eq!(
                s.verify(customer, "rec-1", expires, Some("pbx 1"), sig, now),
                Err(UrlRefused::BadSignature)
            );
        }
    }
}

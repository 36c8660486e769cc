//! Customer-held keys: a tenant registers a public key (PEM, X25519 or RSA
//! of at least 2048 bits) and its recordings' data keys are wrapped for that
//! key alone. The daemon never holds the private key; `recengine decrypt
//! --key private.pem` unwraps with it offline.
//!
//! X25519 keys use HPKE (RFC 9180, base mode, DHKEM(X25519, HKDF-SHA256),
//! HKDF-SHA256, AES-256-GCM; `info` = "recengine data key v1"): the wrapped
//! key is the 32-byte encapsulated key followed by the sealed data key. RSA
//! keys use RSA-OAEP with SHA-256 and MGF1-SHA-256, no label.

use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use pkcs8::der::pem::LineEnding;
use pkcs8::der::{Decode, Encode};
use pkcs8::spki::{AlgorithmIdentifierRef, ObjectIdentifier, SubjectPublicKeyInfoRef};
use pkcs8::{DecodePrivateKey, PrivateKeyInfoRef};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::{DataKey, EncryptionInfo, Wrapping, b64, unb64};

type Kem = hpke::kem::X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type HpkeAead = hpke::aead::AesGcm256;

const HPKE_INFO: &[u8] = b"recengine data key v1";
const X25519_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.110");
const RSA_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const MIN_RSA_BITS: usize = 2048;

/// Why a customer key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CustomerKeyError {
    #[error(
        "not a PEM public key (-----BEGIN PUBLIC KEY-----, SubjectPublicKeyInfo) of type X25519 or RSA"
    )]
    NotAPublicKey,
    #[error(
        "not a PEM private key (PKCS#8 -----BEGIN PRIVATE KEY----- for X25519 or RSA, or -----BEGIN RSA PRIVATE KEY-----)"
    )]
    NotAPrivateKey,
    #[error("an RSA key must have at least {MIN_RSA_BITS} bits; this one has {0}")]
    RsaTooShort(usize),
    #[error("the recording's data key is wrapped for {wanted:?}, and this private key is {got:?}")]
    WrongKey { wanted: String, got: String },
    #[error(
        "the wrapped data key does not open with this private key: it is not the key the recording was made for, or the wrapped key was altered"
    )]
    Unwrap,
    #[error("the recording is not wrapped for a customer key (wrapping {0:?})")]
    NotCustomerHeld(Wrapping),
    #[error("wrapping failed: {0}")]
    Wrap(String),
}

/// A registered public key.
#[derive(Clone)]
pub enum CustomerPublicKey {
    X25519(<Kem as hpke::Kem>::PublicKey),
    Rsa(Box<rsa::PublicKey>),
}

impl std::fmt::Debug for CustomerPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CustomerPublicKey({})", self.algorithm())
    }
}

/// A parsed public key with its id (a fingerprint of the key itself, so
/// the same key always has the same id).
#[derive(Debug, Clone)]
pub struct ParsedPublicKey {
    pub key: CustomerPublicKey,
    pub key_id: String,
    /// The key, re-encoded as PEM.
    pub pem: String,
}

impl CustomerPublicKey {
    pub fn wrapping(&self) -> Wrapping {
        match self {
            Self::X25519(_) => Wrapping::CustomerX25519,
            Self::Rsa(_) => Wrapping::CustomerRsaOaepSha256,
        }
    }

    /// `x25519` or `rsa-oaep-sha256`.
    pub fn algorithm(&self) -> &'static str {
        algorithm_name(self.wrapping())
    }

    /// Wraps `key` for this public key.
    pub fn wrap(&self, key: &DataKey, key_id: &str) -> Result<EncryptionInfo, CustomerKeyError> {
        let wrapped = match self {
            Self::X25519(pk) => {
                let (enc, sealed) = hpke::single_shot_seal::<HpkeAead, Kdf, Kem>(
                    &OpModeS::Base,
                    pk,
                    HPKE_INFO,
                    key.bytes(),
                    &[],
                )
                .map_err(|e| CustomerKeyError::Wrap(e.to_string()))?;
                [&enc.to_bytes()[..], &sealed].concat()
            }
            Self::Rsa(pk) => {
                let mut rng = hpke::rand_core::UnwrapErr(getrandom::SysRng);
                pk.encrypt(&mut rng, rsa::Oaep::<Sha256>::new(), key.bytes())
                    .map_err(|e| CustomerKeyError::Wrap(e.to_string()))?
            }
        };
        Ok(EncryptionInfo {
            scheme: super::segments::SCHEME.into(),
            wrapping: self.wrapping(),
            key_id: key_id.to_owned(),
            wrapped_key: b64(&wrapped),
            stored_sha256: None,
            stored_size_bytes: None,
        })
    }
}

fn algorithm_name(w: Wrapping) -> &'static str {
    match w {
        Wrapping::Kek => "kek",
        Wrapping::CustomerX25519 => "x25519",
        Wrapping::CustomerRsaOaepSha256 => "rsa-oaep-sha256",
    }
}

/// Parses a PEM public key (SubjectPublicKeyInfo).
pub fn parse_public_key(pem: &str) -> Result<ParsedPublicKey, CustomerKeyError> {
    let (label, doc) =
        pkcs8::der::Document::from_pem(pem.trim()).map_err(|_| CustomerKeyError::NotAPublicKey)?;
    if label != "PUBLIC KEY" {
        return Err(CustomerKeyError::NotAPublicKey);
    }
    let der = doc.as_bytes();
    let spki =
        SubjectPublicKeyInfoRef::from_der(der).map_err(|_| CustomerKeyError::NotAPublicKey)?;
    let key = if spki.algorithm.oid == X25519_OID {
        let bytes = spki
            .subject_public_key
            .as_bytes()
            .ok_or(CustomerKeyError::NotAPublicKey)?;
        CustomerPublicKey::X25519(
            <Kem as hpke::Kem>::PublicKey::from_bytes(bytes)
                .map_err(|_| CustomerKeyError::NotAPublicKey)?,
        )
    } else if spki.algorithm.oid == RSA_OID {
        let pk = rsa::PublicKey::from_public_key_der(der)
            .map_err(|_| CustomerKeyError::NotAPublicKey)?;
        let bits = pk.n().bit_width() as usize;
        if bits < MIN_RSA_BITS {
            return Err(CustomerKeyError::RsaTooShort(bits));
        }
        CustomerPublicKey::Rsa(Box::new(pk))
    } else {
        return Err(CustomerKeyError::NotAPublicKey);
    };
    let fingerprint = crate::crypto::sha256_hex(der);
    Ok(ParsedPublicKey {
        key_id: format!("ck-{}", &fingerprint[..24]),
        pem: doc
            .to_pem("PUBLIC KEY", LineEnding::LF)
            .map_err(|_| CustomerKeyError::NotAPublicKey)?,
        key,
    })
}

/// A customer's private key, for `recengine decrypt`.
pub enum CustomerPrivateKey {
    X25519(<Kem as hpke::Kem>::PrivateKey),
    Rsa(Box<rsa::PrivateKey>),
}

impl CustomerPrivateKey {
    /// Parses PKCS#8 PEM (X25519 or RSA) or PKCS#1 PEM (RSA).
    pub fn from_pem(pem: &str) -> Result<Self, CustomerKeyError> {
        let pem = pem.trim();
        if let Ok(k) = rsa::PrivateKey::from_pkcs1_pem(pem) {
            return Ok(Self::Rsa(Box::new(k)));
        }
        let (label, doc) = pkcs8::der::SecretDocument::from_pem(pem)
            .map_err(|_| CustomerKeyError::NotAPrivateKey)?;
        if label != "PRIVATE KEY" {
            return Err(CustomerKeyError::NotAPrivateKey);
        }
        let info = PrivateKeyInfoRef::from_der(doc.as_bytes())
            .map_err(|_| CustomerKeyError::NotAPrivateKey)?;
        if info.algorithm.oid == X25519_OID {
            // RFC 8410: the private key is an OCTET STRING inside the
            // OCTET STRING.
            let inner = <&pkcs8::der::asn1::OctetStringRef>::from_der(info.private_key.as_bytes())
                .map_err(|_| CustomerKeyError::NotAPrivateKey)?;
            let sk = <Kem as hpke::Kem>::PrivateKey::from_bytes(inner.as_bytes())
                .map_err(|_| CustomerKeyError::NotAPrivateKey)?;
            Ok(Self::X25519(sk))
        } else if info.algorithm.oid == RSA_OID {
            let k = rsa::PrivateKey::from_pkcs8_der(doc.as_bytes())
                .map_err(|_| CustomerKeyError::NotAPrivateKey)?;
            Ok(Self::Rsa(Box::new(k)))
        } else {
            Err(CustomerKeyError::NotAPrivateKey)
        }
    }

    fn wrapping(&self) -> Wrapping {
        match self {
            Self::X25519(_) => Wrapping::CustomerX25519,
            Self::Rsa(_) => Wrapping::CustomerRsaOaepSha256,
        }
    }

    /// Unwraps a recording's data key.
    pub fn unwrap(&self, info: &EncryptionInfo) -> Result<DataKey, CustomerKeyError> {
        if !info.wrapping.is_customer() {
            return Err(CustomerKeyError::NotCustomerHeld(info.wrapping));
        }
        if info.wrapping != self.wrapping() {
            return Err(CustomerKeyError::WrongKey {
                wanted: algorithm_name(info.wrapping).into(),
                got: algorithm_name(self.wrapping()).into(),
            });
        }
        let wrapped = unb64(&info.wrapped_key).ok_or(CustomerKeyError::Unwrap)?;
        let plain = Zeroizing::new(match self {
            Self::X25519(sk) => {
                if wrapped.len() < 32 {
                    return Err(CustomerKeyError::Unwrap);
                }
                let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&wrapped[..32])
                    .map_err(|_| CustomerKeyError::Unwrap)?;
                hpke::single_shot_open::<HpkeAead, Kdf, Kem>(
                    &OpModeR::Base,
                    sk,
                    &enc,
                    HPKE_INFO,
                    &wrapped[32..],
                    &[],
                )
                .map_err(|_| CustomerKeyError::Unwrap)?
            }
            Self::Rsa(sk) => sk
                .decrypt(rsa::Oaep::<Sha256>::new(), &wrapped)
                .map_err(|_| CustomerKeyError::Unwrap)?,
        });
        DataKey::from_slice(&plain).ok_or(CustomerKeyError::Unwrap)
    }
}

/// A new X25519 key pair as (private PKCS#8 PEM, public SPKI PEM), for a
/// customer to register the public half (`recengine keys customer-keypair`).
pub fn generate_x25519() -> Result<(Zeroizing<String>, String), CustomerKeyError> {
    let (sk, pk) = Kem::gen_keypair();
    let bad = |e: pkcs8::der::Error| CustomerKeyError::Wrap(e.to_string());
    let sk_bytes = Zeroizing::new(sk.to_bytes().to_vec());
    let inner = Zeroizing::new(
        pkcs8::der::asn1::OctetStringRef::new(&sk_bytes)
            .map_err(bad)?
            .to_der()
            .map_err(bad)?,
    );
    let algorithm = AlgorithmIdentifierRef {
        oid: X25519_OID,
        parameters: None,
    };
    let private = PrivateKeyInfoRef::new(
        algorithm,
        pkcs8::der::asn1::OctetStringRef::new(&inner).map_err(bad)?,
    );
    let private_der = Zeroizing::new(private.to_der().map_err(bad)?);
    let private_pem = Zeroizing::new(
        pkcs8::der::pem::encode_string("PRIVATE KEY", LineEnding::LF, &private_der)
            .map_err(|e| CustomerKeyError::Wrap(e.to_string()))?,
    );
    let pk_bytes = pk.to_bytes();
    let spki = SubjectPublicKeyInfoRef {
        algorithm,
        subject_public_key: pkcs8::der::asn1::BitStringRef::from_bytes(&pk_bytes).map_err(bad)?,
    };
    let public_pem =
        pkcs8::der::pem::encode_string("PUBLIC KEY", LineEnding::LF, &spki.to_der().map_err(bad)?)
            .map_err(|e| CustomerKeyError::Wrap(e.to_string()))?;
    Ok((private_pem, public_pem))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x25519_keys_round_trip_through_pem_and_wrap_a_data_key() {
        let (private, public) = generate_x25519().unwrap();
        assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"));
        let parsed = parse_public_key(&public).unwrap();
        assert_eq!(parsed.key.algorithm(), "x25519");
        assert_eq!(parse_public_key(&parsed.pem).unwrap().key_id, parsed.key_id);
        let key = DataKey::generate().unwrap();
        let info = parsed.key.wrap(&key, &parsed.key_id).unwrap();
        let sk = CustomerPrivateKey::from_pem(&private).unwrap();
        assert_eq!(sk.unwrap(&info).unwrap().bytes(), key.bytes());
        // Another customer's private key does not open it.
        let (other, _) = generate_x25519().unwrap();
        let other = CustomerPrivateKey::from_pem(&other).unwrap();
        assert!(matches!(other.unwrap(&info), Err(CustomerKeyError::Unwrap)));
    }

    #[test]
    fn rsa_oaep_keys_from_openssl_wrap_a_data_key() {
        // A 2048-bit test key made with `openssl genpkey -algorithm RSA`.
        let private = include_str!("../../tests/fixtures/customer-rsa-private.pem");
        let public = include_str!("../../tests/fixtures/customer-rsa-public.pem");
        let parsed = parse_public_key(public).unwrap();
        assert_eq!(parsed.key.algorithm(), "rsa-oaep-sha256");
        let key = DataKey::generate().unwrap();
        let info = parsed.key.wrap(&key, &parsed.key_id).unwrap();
        let sk = CustomerPrivateKey::from_pem(private).unwrap();
        assert_eq!(sk.unwrap(&info).unwrap().bytes(), key.bytes());
        let (x, _) = generate_x25519().unwrap();
        let x = CustomerPrivateKey::from_pem(&x).unwrap();
        assert!(matches!(
            x.unwrap(&info),
            Err(CustomerKeyError::WrongKey { .. })
        ));
    }

    #[test]
    fn garbage_and_short_rsa_keys_are_refused_by_name() {
        assert!(matches!(
            parse_public_key("hello"),
            Err(CustomerKeyError::NotAPublicKey)
        ));
        let short = include_str!("../../tests/fixtures/customer-rsa-1024-public.pem");
        assert!(matches!(
            parse_public_key(short),
            Err(CustomerKeyError::RsaTooShort(1024))
        ));
    }
}

//! The hand-written verifier held to jsonwebtoken's `decode`, set up as
//! strictly, for every algorithm: on crafted tokens, on mutations of signed
//! ones, and on generated variations of header and claims, re-signed so that
//! they reach the claim checks. The variations include the confusions that
//! broke other verifiers: a header naming one key while another key (of
//! another algorithm) signs, an `alg` that is not the key's, an HMAC made
//! with a public key as its secret, and every kind of `typ`. `decode` reads
//! the wall clock, so here the verifier is given the wall clock too.

use std::{
    cell::{Cell, RefCell},
    collections::BTreeMap,
    sync::OnceLock,
    time::Duration,
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use proptest::{
    collection::vec,
    prelude::*,
    sample::select,
    test_runner::{Config, TestRunner},
};
use serde_json::{Value, json};

use super::{
    Keyring, KeyringKeys, SigningAlgorithm, SigningKey, TokenClaims, TokenPolicy, TokenRejection,
    claims::WireClaims,
    keyring::{ACCESS_TOKEN_TYPE, LEGACY_TOKEN_TYPE},
    test_support::{SECRET, claims, policy, raw_claims, sign_text, sign_text_with},
};
use crate::{
    clock::{Clock, SystemClock},
    domain::{AccessToken, Timestamp},
};

/// jsonwebtoken's `decode` reads the wall clock, so the comparisons with it
/// do too.
fn wall_now() -> Timestamp {
    SystemClock.now()
}

const RETIRED_SECRET: [u8; 32] = [1; 32];
const STRANGER_SECRET: [u8; 32] = [9; 32];

/// A key both sides know: its material, and what a verifier is told of it.
struct Known {
    kid: String,
    algorithm: SigningAlgorithm,
    material: Vec<u8>,
    /// Configured HS256 secrets accept the legacy `typ: JWT`.
    configured: bool,
    /// What an attacker can read of it: the public JWK's JSON (nothing for a
    /// secret), to try as an HMAC secret.
    public: Vec<u8>,
}

impl Known {
    fn from_key(key: &SigningKey, configured: bool) -> Self {
        Self {
            kid: key.kid().to_owned(),
            algorithm: key.algorithm(),
            material: key.material().to_vec(),
            configured,
            public: key.public_jwk().map(|jwk| serde_json::to_vec(&jwk).unwrap()).unwrap_or_default(),
        }
    }

    /// Our key, made again from its material.
    fn key(&self) -> SigningKey {
        if self.configured {
            SigningKey::hs256(self.material.clone()).unwrap()
        } else {
            SigningKey::from_material(self.kid.clone(), self.algorithm, self.material.clone()).unwrap()
        }
    }

    /// jsonwebtoken's view of it: the secret, or the public key from the JWK.
    fn decoding_key(&self) -> DecodingKey {
        match self.key().public_jwk() {
            Some(jwk) => DecodingKey::from_jwk(&jwk).unwrap(),
            None => DecodingKey::from_secret(&self.material),
        }
    }
}

fn jwt_algorithm(algorithm: SigningAlgorithm) -> Algorithm {
    match algorithm {
        SigningAlgorithm::Hs256 => Algorithm::HS256,
        SigningAlgorithm::EdDsa => Algorithm::EdDSA,
        SigningAlgorithm::Es256 => Algorithm::ES256,
        SigningAlgorithm::Rs256 => Algorithm::RS256,
    }
}

/// The keys the keyrings here hold, the signing secret first: two
/// configured HS256 secrets and one generated key of every algorithm.
fn known() -> &'static [Known] {
    static KNOWN: OnceLock<Vec<Known>> = OnceLock::new();
    KNOWN.get_or_init(|| {
        let mut known = vec![
            Known::from_key(&SigningKey::hs256(SECRET.to_vec()).unwrap(), true),
            Known::from_key(&SigningKey::hs256(RETIRED_SECRET.to_vec()).unwrap(), true),
        ];
        known.extend(
            SigningAlgorithm::ALL
                .into_iter()
                .map(|algorithm| Known::from_key(&SigningKey::generate(algorithm).unwrap(), false)),
        );
        known
    })
}

/// A key of the same algorithm as `named`, unknown to the keyring.
fn stranger(named: &Known) -> SigningKey {
    static STRANGERS: OnceLock<Vec<Known>> = OnceLock::new();
    let strangers = STRANGERS.get_or_init(|| {
        SigningAlgorithm::ALL
            .into_iter()
            .map(|algorithm| match algorithm {
                SigningAlgorithm::Hs256 => Known::from_key(&SigningKey::hs256(STRANGER_SECRET.to_vec()).unwrap(), true),
                _ => Known::from_key(&SigningKey::generate(algorithm).unwrap(), false),
            })
            .collect()
    });
    let stranger = strangers.iter().find(|stranger| stranger.algorithm == named.algorithm).unwrap();
    // Under the named key's id: what a forger would send.
    SigningKey::from_material(named.kid.clone(), stranger.algorithm, stranger.material.clone()).unwrap()
}

/// A keyring holding every known key, signing with the first.
fn known_keyring(policy: TokenPolicy) -> Keyring {
    let mut keys = known().iter().map(Known::key);
    Keyring::assemble(
        KeyringKeys {
            fallback: keys.next(),
            verify_only: keys.collect(),
            scheduled: vec![],
        },
        policy,
    )
}

/// jsonwebtoken's own `decode`, set up as strictly as the fast path, for
/// the known keys: the reference it must agree with. jsonwebtoken leaves
/// three checks to its caller: picking the key by `kid`, refusing a `crit`
/// header it does not understand (RFC 7515 §4.1.11), and the token type, so
/// they are done here, in the same order as ours: the type once the
/// signature holds, the claims after.
fn reference(token: &AccessToken, policy: &TokenPolicy, check_expiry: bool) -> Result<TokenClaims, TokenRejection> {
    let header = jsonwebtoken::decode_header(token.expose()).map_err(|error| rejection(error.kind()))?;
    let known = known()
        .iter()
        .find(|known| header.kid.as_deref() == Some(known.kid.as_str()))
        .ok_or(TokenRejection::BadSignature)?;
    let raw_header = token.expose().split('.').next().and_then(|part| URL_SAFE_NO_PAD.decode(part).ok());
    let raw_header: Value = raw_header.and_then(|json| serde_json::from_slice(&json).ok()).unwrap_or_default();
    if raw_header.get("crit").is_some() {
        return Err(TokenRejection::Malformed);
    }
    let algorithm = jwt_algorithm(known.algorithm);
    if header.alg != algorithm {
        return Err(TokenRejection::BadSignature);
    }
    let decoding = known.decoding_key();
    let (message, signature) = token.expose().rsplit_once('.').ok_or(TokenRejection::Malformed)?;
    let verified = jsonwebtoken::crypto::verify(signature, message.as_bytes(), &decoding, algorithm)
        .map_err(|error| rejection(error.kind()))?;
    if !verified {
        return Err(TokenRejection::BadSignature);
    }
    let typ = header.typ.as_deref().map(|typ| typ.strip_prefix("application/").unwrap_or(typ));
    let typed = typ.is_some_and(|typ| {
        typ.eq_ignore_ascii_case(ACCESS_TOKEN_TYPE) || (known.configured && typ.eq_ignore_ascii_case(LEGACY_TOKEN_TYPE))
    });
    if !typed {
        return Err(TokenRejection::WrongType);
    }
    let mut validation = Validation::new(algorithm);
    validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
    validation.validate_exp = check_expiry;
    validation.validate_nbf = true;
    validation.leeway = policy.leeway.as_secs();
    validation.set_issuer(&[&policy.issuer]);
    validation.set_audience(&[&policy.audience]);
    let wire = jsonwebtoken::decode::<WireClaims>(token.expose(), &decoding, &validation)
        .map_err(|error| rejection(error.kind()))?
        .claims;
    TokenClaims::try_from(wire)
}

fn rejection(kind: &ErrorKind) -> TokenRejection {
    match kind {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::MissingAlgorithm
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::InvalidKeyFormat
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_) => TokenRejection::BadSignature,
        ErrorKind::ExpiredSignature => TokenRejection::Expired,
        ErrorKind::ImmatureSignature => TokenRejection::NotYetValid,
        ErrorKind::InvalidIssuer => TokenRejection::WrongIssuer,
        ErrorKind::InvalidAudience => TokenRejection::WrongAudience,
        _ => TokenRejection::Malformed,
    }
}

/// Both say "not a token of ours" (they name a bad header differently).
fn same_verdict(ours: &Result<TokenClaims, TokenRejection>, theirs: &Result<TokenClaims, TokenRejection>) -> bool {
    use TokenRejection::{BadSignature, Malformed};
    match (ours, theirs) {
        (Err(BadSignature | Malformed), Err(BadSignature | Malformed)) => true,
        _ => ours == theirs,
    }
}

fn ours(
    keyring: &Keyring,
    token: &AccessToken,
    now: Timestamp,
    check_expiry: bool,
) -> Result<TokenClaims, TokenRejection> {
    if check_expiry {
        keyring.verify(token, now)
    } else {
        keyring.verify_ignoring_expiry(token, now)
    }
}

fn text_of(value: &Value) -> String {
    value.to_string()
}

#[test]
fn agrees_with_jsonwebtoken_on_crafted_tokens_of_every_algorithm() {
    let keyring = known_keyring(policy());
    let now = wall_now().as_unix_seconds();
    let changes = [
        json!({"exp": now - 10}),
        json!({"nbf": now + 3600}),
        json!({"iss": "other"}),
        json!({"aud": "other"}),
        json!({"aud": ["audience"]}),
        json!({"exp": (now + 60).to_string()}),
        json!({"nbf": now.to_string()}),
        json!({"exp": 1.5e12}),
        json!({"sub": "not-a-uuid"}),
        json!({"roles": "admin"}),
        json!({"iat": null}),
    ];
    let mut cases = Vec::new();
    for known in known() {
        let key = known.key();
        let header = |alg: &str, typ: &str| json!({"alg": alg, "typ": typ, "kid": known.kid});
        let valid = header(known.algorithm.as_str(), ACCESS_TOKEN_TYPE);
        cases.push(
            Keyring::new(known.key(), vec![], policy())
                .sign(&claims(wall_now(), Duration::from_secs(60)), wall_now())
                .unwrap(),
        );
        for change in &changes {
            let mut claims = raw_claims(now);
            for (name, value) in change.as_object().unwrap() {
                claims[name] = value.clone();
            }
            cases.push(sign_text_with(&text_of(&valid), &text_of(&claims), &key));
        }
        let mut missing = raw_claims(now);
        missing.as_object_mut().unwrap().remove("iss");
        cases.push(sign_text_with(&text_of(&valid), &text_of(&missing), &key));
        cases.push(sign_text_with(&text_of(&valid), &text_of(&raw_claims(now)), &stranger(known)));
        cases.push(sign_text_with(
            &text_of(&header(known.algorithm.as_str(), LEGACY_TOKEN_TYPE)),
            &text_of(&raw_claims(now)),
            &key,
        ));
        cases.push(sign_text_with(
            &text_of(&json!({"alg": known.algorithm.as_str()})),
            &text_of(&raw_claims(now)),
            &key,
        ));
    }
    for token in &cases {
        for check_expiry in [true, false] {
            let verdict = ours(&keyring, token, wall_now(), check_expiry);
            assert_eq!(verdict, reference(token, &policy(), check_expiry), "{}", claims_of_token(token));
        }
    }
}

/// The confusions that forged tokens elsewhere, each named: every one is
/// refused as a bad signature, before its claims are read, by us and by
/// jsonwebtoken alike.
#[test]
fn algorithm_and_key_confusion_is_refused() {
    let keyring = known_keyring(policy());
    let claims = text_of(&raw_claims(wall_now().as_unix_seconds()));
    let by_algorithm =
        |algorithm| known().iter().find(|known| !known.configured && known.algorithm == algorithm).unwrap();
    let (secret, ed25519, rsa) =
        (&known()[0], by_algorithm(SigningAlgorithm::EdDsa), by_algorithm(SigningAlgorithm::Rs256));
    let header = |alg: &str, kid: &str| text_of(&json!({"alg": alg, "typ": ACCESS_TOKEN_TYPE, "kid": kid}));
    let forgeries = [
        (
            "HS256 on an Ed25519 kid, the public key as the HMAC secret",
            sign_text(&header("HS256", &ed25519.kid), &claims, &ed25519.public),
        ),
        (
            "HS256 on an RS256 kid, the public key as the HMAC secret",
            sign_text(&header("HS256", &rsa.kid), &claims, &rsa.public),
        ),
        (
            "HS256 on an Ed25519 kid, signed with our HMAC secret",
            sign_text(&header("HS256", &ed25519.kid), &claims, &SECRET),
        ),
        (
            "EdDSA on the HMAC kid, signed by our Ed25519 key",
            sign_text_with(&header("EdDSA", &secret.kid), &claims, &ed25519.key()),
        ),
        (
            "RS256 on the Ed25519 kid, signed by our RSA key",
            sign_text_with(&header("RS256", &ed25519.kid), &claims, &rsa.key()),
        ),
        (
            "EdDSA on the RS256 kid, signed by our Ed25519 key",
            sign_text_with(&header("EdDSA", &rsa.kid), &claims, &ed25519.key()),
        ),
        (
            "the RFC 9864 name Ed25519 on the Ed25519 kid",
            sign_text_with(&header("Ed25519", &ed25519.kid), &claims, &ed25519.key()),
        ),
    ];
    for (name, token) in forgeries {
        assert_eq!(keyring.verify(&token, wall_now()), Err(TokenRejection::BadSignature), "{name}");
        assert!(same_verdict(&Err(TokenRejection::BadSignature), &reference(&token, &policy(), true)), "{name}");
    }
}

#[test]
fn agrees_with_jsonwebtoken_on_thousands_of_mutations() {
    let keyring = known_keyring(policy());
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ ";
    for known in known() {
        let valid = Keyring::new(known.key(), vec![], policy())
            .sign(&claims(wall_now(), Duration::from_secs(60)), wall_now())
            .unwrap();
        let bytes = valid.expose().as_bytes().to_vec();
        for _ in 0..1500 {
            let mut mutated = bytes.clone();
            for _ in 0..=(next() % 3) {
                let position = (next() as usize) % mutated.len();
                match next() % 3 {
                    0 => mutated[position] = alphabet[(next() as usize) % alphabet.len()],
                    1 => {
                        mutated.remove(position);
                    }
                    _ => mutated.insert(position, alphabet[(next() as usize) % alphabet.len()]),
                }
            }
            let token = AccessToken::issued(String::from_utf8(mutated).unwrap());
            let (ours, theirs) = (keyring.verify(&token, wall_now()), reference(&token, &policy(), true));
            assert!(same_verdict(&ours, &theirs), "{ours:?} vs {theirs:?} for {}", token.expose());
        }
    }
}

/// The claims part of a test token, decoded, for a failure message.
fn claims_of_token(token: &AccessToken) -> String {
    token
        .expose()
        .split('.')
        .nth(1)
        .map(|part| String::from_utf8_lossy(&URL_SAFE_NO_PAD.decode(part).unwrap_or_default()).into_owned())
        .unwrap_or_default()
}

/// A claim or header value. Times count from the instant the case is
/// rendered at, so that the same case can be checked at several `now`.
#[derive(Debug, Clone)]
enum Member {
    Json(Value),
    Seconds(i64),
    SecondsAsString(i64),
    SecondsAsFloat(i64),
}

impl Member {
    fn render(&self, base: i64) -> Value {
        match self {
            Self::Json(value) => value.clone(),
            Self::Seconds(offset) => Value::from(base + offset),
            Self::SecondsAsString(offset) => Value::from((base + offset).to_string()),
            Self::SecondsAsFloat(offset) => Value::from((base + offset) as f64),
        }
    }
}

fn text(value: &str) -> Member {
    Member::Json(Value::from(value))
}

/// A JSON object as a list of members, so that a name can occur twice,
/// which `serde_json::Value` cannot express.
#[derive(Debug, Clone)]
struct JsonObject(Vec<(&'static str, Member)>);

impl JsonObject {
    fn apply(&mut self, edit: &Edit) {
        match edit {
            Edit::Set(name, member) => match self.0.iter_mut().find(|(existing, _)| existing == name) {
                Some((_, value)) => *value = member.clone(),
                None => self.0.push((name, member.clone())),
            },
            Edit::Remove(name) => self.0.retain(|(existing, _)| existing != name),
            Edit::Duplicate(name, member) => self.0.push((name, member.clone())),
        }
    }

    fn render(&self, base: i64) -> String {
        let members: Vec<String> = self
            .0
            .iter()
            .map(|(name, member)| format!("{}:{}", Value::from(*name), member.render(base)))
            .collect();
        format!("{{{}}}", members.join(","))
    }

    fn offsets_of(&self, name: &str) -> impl Iterator<Item = i64> {
        self.0.iter().filter(move |(existing, _)| *existing == name).filter_map(|(_, member)| match member {
            Member::Seconds(offset) => Some(*offset),
            _ => None,
        })
    }
}

#[derive(Debug, Clone)]
enum Edit {
    /// Replaces the first member of that name, or adds one.
    Set(&'static str, Member),
    Remove(&'static str),
    /// Adds a second member of that name.
    Duplicate(&'static str, Member),
}

/// Which key signs the case.
#[derive(Debug, Clone, Copy)]
enum Signer {
    /// The key the header's `kid` names (the signing key when it names none
    /// of ours), with its own algorithm whatever the header's `alg` says.
    NamedKey,
    /// The next known key, often of another algorithm: a kid/key confusion.
    OtherKnownKey,
    /// A key of the named key's algorithm that the keyring does not hold.
    Stranger,
    /// HMAC-SHA-256 with the named key's public JWK as the secret: the
    /// classic public-key-as-HMAC-secret forgery.
    PublicKeyAsHmacSecret,
}

#[derive(Debug, Clone)]
struct Case {
    header: JsonObject,
    claims: JsonObject,
    signer: Signer,
    leeway_seconds: u64,
}

impl Case {
    /// The case as a token, its times counted from `base` (Unix seconds).
    fn sign(&self, base: i64) -> AccessToken {
        let (header, claims) = (self.header.render(base), self.claims.render(base));
        let position = self.named_position();
        let named = &known()[position];
        match self.signer {
            Signer::NamedKey => sign_text_with(&header, &claims, &named.key()),
            Signer::OtherKnownKey => sign_text_with(&header, &claims, &known()[(position + 1) % known().len()].key()),
            Signer::Stranger => sign_text_with(&header, &claims, &stranger(named)),
            Signer::PublicKeyAsHmacSecret if named.public.is_empty() => sign_text(&header, &claims, &named.material),
            Signer::PublicKeyAsHmacSecret => sign_text(&header, &claims, &named.public),
        }
    }

    /// Which known key the header's last `kid` names; the first when none.
    fn named_position(&self) -> usize {
        let kid = self.header.0.iter().rev().find(|(name, _)| *name == "kid");
        kid.and_then(|(_, member)| match member {
            Member::Json(Value::String(kid)) => known().iter().position(|known| known.kid == *kid),
            _ => None,
        })
        .unwrap_or(0)
    }

    /// Offsets from the rendering instant to check at: 0, and each side of
    /// every `exp` and `nbf` edge, leeway included.
    fn now_offsets(&self) -> Vec<i64> {
        let leeway = i64::try_from(self.leeway_seconds).unwrap();
        let mut offsets = vec![0];
        for exp in self.claims.offsets_of("exp") {
            offsets.extend([exp + leeway, exp + leeway + 1]);
        }
        for nbf in self.claims.offsets_of("nbf") {
            offsets.extend([nbf - leeway - 1, nbf - leeway]);
        }
        offsets.sort_unstable();
        offsets.dedup();
        offsets
    }

    fn policy(&self) -> TokenPolicy {
        TokenPolicy {
            leeway: Duration::from_secs(self.leeway_seconds),
            ..policy()
        }
    }
}

fn json_members(values: Vec<Value>) -> impl Strategy<Value = Member> {
    select(values).prop_map(Member::Json)
}

fn header_edit(kids: Vec<String>) -> impl Strategy<Value = Edit> {
    let mut kid_values: Vec<Value> = kids.iter().map(|kid| json!(kid)).collect();
    kid_values.extend([
        json!("unknown"),
        json!(""),
        json!(7),
        Value::Null,
        json!([kids[0].clone()]),
        json!({}),
    ]);
    prop_oneof![
        json_members(vec![
            json!("HS256"),
            json!("HS512"),
            json!("none"),
            json!("None"),
            json!("hs256"),
            json!("RS256"),
            json!("EdDSA"),
            json!("ES256"),
            json!("Ed25519"),
            json!("PS256"),
            json!(""),
            json!(256),
            Value::Null,
            json!(["HS256"]),
        ])
        .prop_map(|member| Edit::Set("alg", member)),
        json_members(kid_values).prop_map(|member| Edit::Set("kid", member)),
        Just(Edit::Remove("kid")),
        json_members(vec![
            json!("JWT"),
            json!("jwt"),
            json!("at+jwt"),
            json!("AT+JWT"),
            json!("application/at+jwt"),
            json!("application/jwt"),
            json!("id+jwt"),
            json!("JOSE"),
            json!(""),
            json!(1),
            Value::Null,
            json!(true),
            json!(["JWT"]),
            json!({}),
        ])
        .prop_map(|member| Edit::Set("typ", member)),
        Just(Edit::Remove("typ")),
        json_members(vec![
            json!(["exp"]),
            json!(["x-note"]),
            json!([]),
            json!("exp"),
            json!(1),
            Value::Null
        ])
        .prop_map(|member| Edit::Set("crit", member)),
        (
            select(vec!["alg", "kid", "typ", "x-note"]),
            json_members(vec![json!("HS256"), json!("at+jwt"), json!(1)])
        )
            .prop_map(|(name, member)| Edit::Duplicate(name, member)),
        json_members(vec![json!(1), json!("note"), Value::Null, json!({"a": [1]})])
            .prop_map(|member| Edit::Set("x-note", member)),
    ]
}

fn time_member() -> impl Strategy<Value = Member> {
    prop_oneof![
        6 => (-4i64..=4).prop_map(Member::Seconds),
        1 => (-4i64..=4).prop_map(Member::SecondsAsString),
        1 => (-4i64..=4).prop_map(Member::SecondsAsFloat),
        4 => json_members(vec![
            json!(0),
            json!(-1),
            json!(-1_750_000_000),
            json!(i64::MAX),
            json!(u64::MAX),
            json!(1e30),
            json!(1.5),
            json!(-0.0),
            Value::Null,
            json!([]),
            json!({}),
            json!(true),
        ]),
    ]
}

const CLAIM_NAMES: [&str; 10] = ["iss", "aud", "sub", "sid", "jti", "iat", "nbf", "exp", "name", "roles"];

fn claim_edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (select(vec!["exp", "nbf", "iat"]), time_member()).prop_map(|(name, member)| Edit::Set(name, member)),
        2 => json_members(vec![
            json!("issuer"),
            json!("other"),
            json!(""),
            json!("Issuer"),
            json!("issuer "),
            json!(["issuer"]),
            json!([]),
            json!(1),
            Value::Null,
        ])
        .prop_map(|member| Edit::Set("iss", member)),
        2 => json_members(vec![
            json!("audience"),
            json!("other"),
            json!(""),
            json!(["audience"]),
            json!(["audience", "other"]),
            json!([]),
            json!(7),
            Value::Null,
        ])
        .prop_map(|member| Edit::Set("aud", member)),
        1 => (
            select(vec!["sub", "sid", "jti"]),
            json_members(vec![
                json!("not-a-uuid"),
                json!(""),
                json!("0196E0D2-6C7B-7A3E-9F00-000000000001"),
                json!("0196e0d26c7b7a3e9f00000000000001"),
                json!("urn:uuid:0196e0d2-6c7b-7a3e-9f00-000000000001"),
                json!(5),
                Value::Null,
                json!(["0196e0d2-6c7b-7a3e-9f00-000000000001"]),
            ]),
        )
            .prop_map(|(name, member)| Edit::Set(name, member)),
        1 => json_members(vec![
            json!("admin"),
            json!([1]),
            json!([null]),
            json!({}),
            Value::Null,
            json!([]),
            json!([["admin"]]),
        ])
        .prop_map(|member| Edit::Set("roles", member)),
        1 => json_members(vec![json!(5), Value::Null, json!(""), json!("bob"), json!([])])
            .prop_map(|member| Edit::Set("name", member)),
        1 => select(CLAIM_NAMES.to_vec()).prop_map(Edit::Remove),
        1 => (select([CLAIM_NAMES.as_slice(), &["extra"]].concat()), prop_oneof![
            json_members(vec![json!("issuer"), json!(1)]),
            (-2i64..=2).prop_map(Member::Seconds),
        ])
            .prop_map(|(name, member)| Edit::Duplicate(name, member)),
        1 => json_members(vec![json!(1), json!("x"), Value::Null, json!({"a": [1]})])
            .prop_map(|member| Edit::Set("extra", member)),
    ]
}

fn case_strategy() -> impl Strategy<Value = Case> {
    let kids: Vec<String> = known().iter().map(|known| known.kid.clone()).collect();
    let header = (
        select(known().iter().map(|known| (known.kid.clone(), known.algorithm)).collect::<Vec<_>>()),
        prop_oneof![3 => Just(vec![]), 2 => vec(header_edit(kids), 1..=2)],
    )
        .prop_map(|((kid, algorithm), edits)| {
            let mut header = JsonObject(vec![
                ("alg", text(algorithm.as_str())),
                ("typ", text(ACCESS_TOKEN_TYPE)),
                ("kid", text(&kid)),
            ]);
            edits.iter().for_each(|edit| header.apply(edit));
            header
        });
    let claims = (-3i64..=1, -1i64..=3, prop_oneof![1 => Just(vec![]), 3 => vec(claim_edit(), 1..=3)]).prop_map(
        |(nbf, exp, edits)| {
            let mut claims = JsonObject(vec![
                ("iss", text("issuer")),
                ("aud", text("audience")),
                ("sub", text("0196e0d2-6c7b-7a3e-9f00-000000000001")),
                ("sid", text("0196e0d2-6c7b-7a3e-9f00-000000000002")),
                ("jti", text("0196e0d2-6c7b-7a3e-9f00-000000000003")),
                ("iat", Member::Seconds(nbf)),
                ("nbf", Member::Seconds(nbf)),
                ("exp", Member::Seconds(exp)),
                ("name", text("alice")),
                ("roles", Member::Json(json!(["admin"]))),
            ]);
            edits.iter().for_each(|edit| claims.apply(edit));
            claims
        },
    );
    let signer = prop_oneof![
        24 => Just(Signer::NamedKey),
        2 => Just(Signer::OtherKnownKey),
        2 => Just(Signer::Stranger),
        1 => Just(Signer::PublicKeyAsHmacSecret)
    ];
    (header, claims, signer, select(vec![0u64, 2])).prop_map(|(header, claims, signer, leeway_seconds)| Case {
        header,
        claims,
        signer,
        leeway_seconds,
    })
}

/// How often the verifier got past the signature, and to which verdict.
#[derive(Default)]
struct Tally {
    cases: Cell<usize>,
    signature_verified: Cell<usize>,
    verdicts: RefCell<BTreeMap<String, usize>>,
}

/// Re-signed variations of header and claims, each checked at the edges of
/// its `exp` and `nbf`, with and without the expiry check, for keys of every
/// algorithm. Mutating a signed token could not do this: every mutation
/// broke the signature first.
#[test]
fn agrees_with_jsonwebtoken_on_re_signed_variations_of_header_and_claims() {
    let tally = Tally::default();
    let config = Config {
        cases: 1024,
        failure_persistence: None,
        ..Config::default()
    };
    let keyrings: Vec<(u64, Keyring)> = [0u64, 2]
        .into_iter()
        .map(|leeway| {
            (
                leeway,
                known_keyring(TokenPolicy {
                    leeway: Duration::from_secs(leeway),
                    ..policy()
                }),
            )
        })
        .collect();
    let outcome = TestRunner::new(config).run(&case_strategy(), |case| {
        tally.cases.set(tally.cases.get() + 1);
        let keyring = &keyrings.iter().find(|(leeway, _)| *leeway == case.leeway_seconds).unwrap().1;
        // The signature does not depend on the times, so any base will do.
        let past_signature = keyring.signed_payload(&case.sign(0)).map(|_| ());
        if let Err(rejection) = past_signature {
            *tally.verdicts.borrow_mut().entry(format!("before claims: {rejection:?}")).or_default() += 1;
        }
        let reached_claims = past_signature.is_ok();
        if reached_claims {
            tally.signature_verified.set(tally.signature_verified.get() + 1);
        }
        for now_offset in case.now_offsets() {
            for check_expiry in [true, false] {
                let (ours, theirs, now) = verdicts(keyring, &case, now_offset, check_expiry);
                let base = now.as_unix_seconds() - now_offset;
                let context = format!(
                    "now {}, check_expiry {check_expiry}, signer {:?}, header {}, claims {}",
                    now.as_unix_seconds(),
                    case.signer,
                    case.header.render(base),
                    case.claims.render(base)
                );
                if reached_claims {
                    // Past the signature, nothing excuses a different verdict.
                    prop_assert_eq!(&ours, &theirs, "{}", context);
                    *tally.verdicts.borrow_mut().entry(verdict_name(&ours)).or_default() += 1;
                } else {
                    prop_assert!(same_verdict(&ours, &theirs), "{:?} vs {:?}: {}", ours, theirs, context);
                }
            }
        }
        Ok(())
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }

    let (cases, verified) = (tally.cases.get(), tally.signature_verified.get());
    let verdicts = tally.verdicts.into_inner();
    eprintln!("{verified} of {cases} cases past the signature; verdicts: {verdicts:?}");
    assert!(verified * 2 >= cases, "only {verified} of {cases} cases reached the claim checks");
    for verdict in [
        "Ok",
        "Expired",
        "NotYetValid",
        "WrongIssuer",
        "WrongAudience",
        "Malformed",
        "before claims: WrongType",
        "before claims: BadSignature",
    ] {
        let seen = verdicts.get(verdict).copied().unwrap_or_default();
        assert!(seen >= 20, "the checks said {verdict} only {seen} times");
    }
}

fn verdict_name(verdict: &Result<TokenClaims, TokenRejection>) -> String {
    match verdict {
        Ok(_) => "Ok".to_owned(),
        Err(rejection) => format!("{rejection:?}"),
    }
}

/// Ours and jsonwebtoken's verdicts on the case rendered `now_offset`
/// seconds before now, and that now. jsonwebtoken reads the wall clock, so the case is
/// placed around it, and read again if the clock ticked meanwhile.
fn verdicts(
    keyring: &Keyring,
    case: &Case,
    now_offset: i64,
    check_expiry: bool,
) -> (Result<TokenClaims, TokenRejection>, Result<TokenClaims, TokenRejection>, Timestamp) {
    loop {
        let now = wall_now().truncated_to_seconds();
        let base = now.as_unix_seconds() - now_offset;
        let token = case.sign(base);
        let theirs = reference(&token, &case.policy(), check_expiry);
        if wall_now().truncated_to_seconds() != now {
            continue;
        }
        return (ours(keyring, &token, now, check_expiry), theirs, now);
    }
}

//! The hand-written verifier held to jsonwebtoken's `decode`, set up as
//! strictly: on crafted tokens, on mutations of a signed one, and on
//! generated variations of header and claims, re-signed so that they reach
//! the claim checks. `decode` reads the wall clock, so here the verifier is
//! given the wall clock too.

use std::{
    cell::{Cell, RefCell},
    collections::BTreeMap,
    time::Duration,
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use proptest::{
    collection::vec,
    prelude::*,
    sample::select,
    test_runner::{Config, TestRunner},
};
use serde_json::{Value, json};

use super::{
    Keyring, SigningKey, TokenClaims, TokenPolicy, TokenRejection, reference,
    test_support::{SECRET, claims, header, keyring, policy, raw_claims, sign_raw, sign_text},
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

/// jsonwebtoken's own `decode`, set up as strictly as the fast path, for
/// the keyring of [`keyring`]: the reference it must agree with.
fn reference(token: &AccessToken, check_expiry: bool) -> Result<TokenClaims, TokenRejection> {
    let kid = SigningKey::hs256(SECRET.to_vec()).unwrap().kid().to_owned();
    reference::verify(token, &[(kid, &SECRET)], &policy(), check_expiry)
}

#[test]
fn agrees_with_jsonwebtoken_on_crafted_tokens() {
    let keyring = keyring();
    let now = wall_now().as_unix_seconds();
    let header = header(&keyring, "HS256");
    let mut cases = vec![keyring.sign(&claims(wall_now(), Duration::from_secs(60))).unwrap()];
    let changes = [
        serde_json::json!({"exp": now - 10}),
        serde_json::json!({"nbf": now + 3600}),
        serde_json::json!({"iss": "other"}),
        serde_json::json!({"aud": "other"}),
        serde_json::json!({"aud": ["audience"]}),
        serde_json::json!({"exp": (now + 60).to_string()}),
        serde_json::json!({"nbf": now.to_string()}),
        serde_json::json!({"exp": 1.5e12}),
        serde_json::json!({"sub": "not-a-uuid"}),
        serde_json::json!({"roles": "admin"}),
        serde_json::json!({"iat": null}),
    ];
    for change in changes {
        let mut claims = raw_claims(now);
        for (name, value) in change.as_object().unwrap() {
            claims[name] = value.clone();
        }
        cases.push(sign_raw(header.clone(), claims, &SECRET));
    }
    let mut missing = raw_claims(now);
    missing.as_object_mut().unwrap().remove("iss");
    cases.push(sign_raw(header.clone(), missing, &SECRET));
    cases.push(sign_raw(header.clone(), raw_claims(now), &[8; 32]));
    cases.push(sign_raw(serde_json::json!({"alg": "HS256"}), raw_claims(now), &SECRET));
    for token in &cases {
        for check_expiry in [true, false] {
            let ours = if check_expiry {
                keyring.verify(token, wall_now())
            } else {
                keyring.verify_ignoring_expiry(token, wall_now())
            };
            let theirs = reference(token, check_expiry);
            assert_eq!(ours, theirs, "{:?}", claims_of_token(token));
        }
    }
}

#[test]
fn agrees_with_jsonwebtoken_on_thousands_of_mutations() {
    let keyring = keyring();
    let valid = keyring.sign(&claims(wall_now(), Duration::from_secs(60))).unwrap();
    let bytes = valid.expose().as_bytes().to_vec();
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ ";
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..5000 {
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
        let (ours, theirs) = (keyring.verify(&token, wall_now()), reference(&token, true));
        assert!(reference::same_verdict(&ours, &theirs), "{ours:?} vs {theirs:?} for {}", token.expose());
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

/// Which secret signs the case.
#[derive(Debug, Clone, Copy)]
enum Signer {
    /// The secret of the key the header's `kid` names (the signing key's when
    /// it names none of ours).
    NamedKey,
    /// The keyring's other key.
    OtherKnownKey,
    Stranger,
}

#[derive(Debug, Clone)]
struct Case {
    header: JsonObject,
    claims: JsonObject,
    signer: Signer,
    leeway_seconds: u64,
}

const RETIRED_SECRET: [u8; 32] = [1; 32];
const STRANGER_SECRET: [u8; 32] = [9; 32];

/// The keys the property test's keyring holds: (kid, secret), signing key first.
fn known_keys() -> [(String, &'static [u8]); 2] {
    let kid = |secret: &[u8]| SigningKey::hs256(secret.to_vec()).unwrap().kid().to_owned();
    [(kid(&SECRET), &SECRET), (kid(&RETIRED_SECRET), &RETIRED_SECRET)]
}

impl Case {
    /// The case as a token, its times counted from `base` (Unix seconds).
    fn sign(&self, header: &JsonObject, base: i64) -> AccessToken {
        sign_text(&header.render(base), &self.claims.render(base), self.secret())
    }

    fn secret(&self) -> &'static [u8] {
        let [(_, signing), (retired_kid, retired)] = known_keys();
        let named_retired = self
            .header
            .0
            .iter()
            .rev()
            .find(|(name, _)| *name == "kid")
            .is_some_and(|(_, member)| matches!(member, Member::Json(Value::String(kid)) if *kid == retired_kid));
        match (self.signer, named_retired) {
            (Signer::NamedKey, false) | (Signer::OtherKnownKey, true) => signing,
            (Signer::NamedKey, true) | (Signer::OtherKnownKey, false) => retired,
            (Signer::Stranger, _) => &STRANGER_SECRET,
        }
    }

    /// The header jsonwebtoken is shown. It types `typ` as a string and
    /// refuses it twice; RFC 7515 §4.1.9 and RFC 7519 §5.1 leave `typ` to the
    /// application, and ours does not read it. So unless `typ` is one
    /// string, the verdict must be the one for the same header without it.
    fn header_for_reference(&self) -> JsonObject {
        let typs: Vec<&Member> =
            self.header.0.iter().filter(|(name, _)| *name == "typ").map(|(_, member)| member).collect();
        let mut header = self.header.clone();
        if !matches!(typs.as_slice(), [Member::Json(Value::String(_))]) {
            header.apply(&Edit::Remove("typ"));
        }
        header
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

fn header_edit(kids: [String; 2]) -> impl Strategy<Value = Edit> {
    let [signing_kid, retired_kid] = kids;
    prop_oneof![
        json_members(vec![
            json!("HS256"),
            json!("HS512"),
            json!("none"),
            json!("None"),
            json!("hs256"),
            json!("RS256"),
            json!("EdDSA"),
            json!(""),
            json!(256),
            Value::Null,
            json!(["HS256"]),
        ])
        .prop_map(|member| Edit::Set("alg", member)),
        json_members(vec![
            json!(signing_kid.clone()),
            json!(retired_kid),
            json!("unknown"),
            json!(""),
            json!(7),
            Value::Null,
            json!([signing_kid]),
            json!({}),
        ])
        .prop_map(|member| Edit::Set("kid", member)),
        Just(Edit::Remove("kid")),
        json_members(vec![
            json!("JWT"),
            json!("jwt"),
            json!("at+jwt"),
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
            json_members(vec![json!("HS256"), json!("JWT"), json!(1)])
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
    let kids = known_keys().map(|(kid, _)| kid);
    let header = (select(kids.to_vec()), prop_oneof![3 => Just(vec![]), 2 => vec(header_edit(kids.clone()), 1..=2)])
        .prop_map(|(kid, edits)| {
            let mut header = JsonObject(vec![("alg", text("HS256")), ("typ", text("JWT")), ("kid", text(&kid))]);
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
    let signer =
        prop_oneof![12 => Just(Signer::NamedKey), 1 => Just(Signer::OtherKnownKey), 1 => Just(Signer::Stranger)];
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
/// its `exp` and `nbf`, with and without the expiry check. Mutating a signed
/// token could not do this: every mutation broke the signature first.
#[test]
fn agrees_with_jsonwebtoken_on_re_signed_variations_of_header_and_claims() {
    let tally = Tally::default();
    let config = Config {
        cases: 1024,
        failure_persistence: None,
        ..Config::default()
    };
    let outcome = TestRunner::new(config).run(&case_strategy(), |case| {
        tally.cases.set(tally.cases.get() + 1);
        let keyring = Keyring::new(
            SigningKey::hs256(SECRET.to_vec()).unwrap(),
            vec![SigningKey::hs256(RETIRED_SECRET.to_vec()).unwrap()],
            case.policy(),
        );
        // The signature does not depend on the times, so any base will do.
        let reached_claims = keyring.signed_payload(&case.sign(&case.header, 0)).is_ok();
        if reached_claims {
            tally.signature_verified.set(tally.signature_verified.get() + 1);
        }
        for now_offset in case.now_offsets() {
            for check_expiry in [true, false] {
                let (ours, theirs, now) = verdicts(&keyring, &case, now_offset, check_expiry);
                let base = now.as_unix_seconds() - now_offset;
                let context = format!(
                    "now {}, check_expiry {check_expiry}, header {}, claims {}",
                    now.as_unix_seconds(),
                    case.header.render(base),
                    case.claims.render(base)
                );
                if reached_claims {
                    // Past the signature, nothing excuses a different verdict.
                    prop_assert_eq!(&ours, &theirs, "{}", context);
                    *tally.verdicts.borrow_mut().entry(verdict_name(&ours)).or_default() += 1;
                } else {
                    prop_assert!(reference::same_verdict(&ours, &theirs), "{:?} vs {:?}: {}", ours, theirs, context);
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
    eprintln!("{verified} of {cases} cases past the signature; verdicts there: {verdicts:?}");
    assert!(verified * 2 >= cases, "only {verified} of {cases} cases reached the claim checks");
    for verdict in [
        "Ok",
        "Expired",
        "NotYetValid",
        "WrongIssuer",
        "WrongAudience",
        "Malformed",
    ] {
        let seen = verdicts.get(verdict).copied().unwrap_or_default();
        assert!(seen >= 20, "the claim checks said {verdict} only {seen} times");
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
        let theirs = reference::verify(
            &case.sign(&case.header_for_reference(), base),
            &known_keys(),
            &case.policy(),
            check_expiry,
        );
        if wall_now().truncated_to_seconds() != now {
            continue;
        }
        let token = case.sign(&case.header, base);
        let ours = if check_expiry {
            keyring.verify(&token, now)
        } else {
            keyring.verify_ignoring_expiry(&token, now)
        };
        return (ours, theirs, now);
    }
}

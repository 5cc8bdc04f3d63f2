//! A real JWT library verifies our tokens from the published JWKS alone, as
//! a backend service would: PyJWT's `PyJWKClient` fetches
//! `/.well-known/jwks.json`, picks the key by `kid`, and checks signature,
//! issuer, audience and expiry. tests/run.sh installs PyJWT[crypto].

use token_authority::domain::tokens::SigningAlgorithm;

use crate::{
    helpers::{TestConfig, claims_of},
    tools,
};

/// Verifies argv[2] with the keys at argv[1]; prints the claims as JSON.
const VERIFY: &str = r#"
import json, sys, jwt
url, token, issuer, audience = sys.argv[1:5]
key = jwt.PyJWKClient(url).get_signing_key_from_jwt(token)
claims = jwt.decode(
    token, key.key, algorithms=["EdDSA", "ES256", "RS256"], issuer=issuer, audience=audience,
    options={"require": ["exp", "iat", "iss", "aud", "sub"]},
)
print(json.dumps(claims))
"#;

#[tokio::test]
async fn pyjwt_verifies_login_tokens_from_the_jwks_for_every_algorithm() {
    let Some(python) = tools::python_with(&["jwt", "cryptography"]) else {
        return;
    };
    for algorithm in [
        SigningAlgorithm::EdDsa,
        SigningAlgorithm::Es256,
        SigningAlgorithm::Rs256,
    ] {
        let config = TestConfig::default().stored_keys(algorithm);
        let policy = config.config.tokens.policy.clone();
        let mut app = config.spawn().await;
        let login = app.user_with_session("alice").await;
        let url = format!("http://{}/.well-known/jwks.json", app.http_address.expect("the HTTP listener is on"));
        let verify = |token: String, audience: String| {
            let (python, url, issuer) = (python.clone(), url.clone(), policy.issuer.clone());
            async move { tools::run(&python, &["-c", VERIFY, &url, &token, &issuer, &audience]).await }
        };

        let (verified, stdout, stderr) = verify(login.access_token.clone(), policy.audience.clone()).await;

        assert!(verified, "{algorithm}: {stderr}");
        let claims: serde_json::Value = serde_json::from_str(&stdout).expect("the claims, as JSON");
        assert_eq!(claims, claims_of(&login.access_token), "{algorithm}");
        // And it refuses what it must: another audience, an altered token.
        let (verified, _, stderr) = verify(login.access_token.clone(), "another-service".into()).await;
        assert!(!verified && stderr.contains("InvalidAudienceError"), "{algorithm}: {stderr}");
        let mut altered = login.access_token.clone().into_bytes();
        let inside = altered.len() - 5;
        altered[inside] = if altered[inside] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        let (verified, _, stderr) = verify(altered, policy.audience.clone()).await;
        assert!(!verified && stderr.contains("InvalidSignatureError"), "{algorithm}: {stderr}");
    }
}

//! Minted API tokens: stored by hash, listed (per tenant or all), found by hash, revoked (once,
//! keeping the first revocation time, confined to a tenant when asked), and visible to every
//! node of a shared store as soon as they are written.

use intake_core::Timestamp;
use intake_store::ApiToken;

use crate::common::*;
use crate::conformance;

fn token(id: &str, tenant: Option<&str>, at: Timestamp) -> ApiToken {
    ApiToken {
        id: id.into(),
        hash: format!("{:0>64}", id.trim_start_matches("tok_")),
        tenant: tenant.map(Into::into),
        name: format!("ci for {id}"),
        created_by: "operator".into(),
        created_at: at,
        expires_at: Some(Timestamp(at.as_millis() + 60_000)),
        revoked_at: None,
    }
}

async fn tokens_are_stored_listed_found_by_hash_and_revoked(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    let t = Timestamp(T0);
    let op = ApiToken {
        expires_at: None,
        tenant: None,
        ..token("tok_1", None, t)
    };
    let ma = token("tok_2", Some("maelys"), Timestamp(T0 + 1));
    let other = token("tok_3", Some("other"), Timestamp(T0 + 2));
    for tk in [&op, &ma, &other] {
        store.create_token(tk.clone()).await.unwrap();
    }
    // Newest first; a tenant's listing holds its tokens only.
    let all: Vec<String> = store
        .list_tokens(None)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(all, ["tok_3", "tok_2", "tok_1"]);
    assert_eq!(
        store.list_tokens(Some("maelys".into())).await.unwrap(),
        vec![ma.clone()]
    );
    assert!(store
        .list_tokens(Some("nobody".into()))
        .await
        .unwrap()
        .is_empty());

    assert_eq!(store.find_token(&op.hash).await.unwrap(), Some(op.clone()));
    assert_eq!(store.find_token(&"f".repeat(64)).await.unwrap(), None);
    assert!(op.is_valid(Timestamp(T0 + 10_000_000)));
    assert!(ma.is_valid(Timestamp(T0 + 1)) && !ma.is_valid(Timestamp(T0 + 60_001)));

    // A tenant cannot revoke another tenant's token, nor an operator token.
    let at = Timestamp(T0 + 5_000);
    assert_eq!(
        store
            .revoke_token("tok_3", Some("maelys".into()), at)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .revoke_token("tok_1", Some("maelys".into()), at)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.revoke_token("tok_nope", None, at).await.unwrap(),
        None
    );
    let revoked = store
        .revoke_token("tok_2", Some("maelys".into()), at)
        .await
        .unwrap()
        .expect("found");
    assert_eq!(revoked.revoked_at, Some(at));
    assert!(!revoked.is_valid(Timestamp(T0 + 6)));
    // Revoking again keeps the first time.
    let again = store
        .revoke_token("tok_2", None, Timestamp(T0 + 9_000))
        .await
        .unwrap()
        .expect("found");
    assert_eq!(again.revoked_at, Some(at));
    let found = store
        .find_token(&ma.hash)
        .await
        .unwrap()
        .expect("still listed");
    assert_eq!(found.revoked_at, Some(at));
    assert_eq!(store.find_token(&other.hash).await.unwrap(), Some(other));
    close(store).await;
}

async fn a_token_hash_is_unique(kind: Kind) {
    let db = Db::new(kind).await;
    let store = db.open().await;
    let t = Timestamp(T0);
    store.create_token(token("tok_1", None, t)).await.unwrap();
    let dup = ApiToken {
        id: "tok_9".into(),
        ..token("tok_1", None, t)
    };
    assert!(store.create_token(dup).await.is_err());
    assert_eq!(store.list_tokens(None).await.unwrap().len(), 1);
    close(store).await;
}

conformance!(
    tokens_are_stored_listed_found_by_hash_and_revoked,
    a_token_hash_is_unique,
);

/// Two nodes share one PostgreSQL database: a token revoked through one is refused by the
/// other at once (nothing is cached).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_revocation_on_one_node_is_seen_by_every_node() {
    let db = Db::new(Kind::Postgres).await;
    let a = db.open_as("node-a").await;
    let b = db.open_as("node-b").await;
    let t = Timestamp(T0);
    let tk = token("tok_1", Some("maelys"), t);
    a.create_token(tk.clone()).await.unwrap();
    assert_eq!(b.find_token(&tk.hash).await.unwrap(), Some(tk.clone()));
    b.revoke_token("tok_1", None, t)
        .await
        .unwrap()
        .expect("found");
    let seen = a.find_token(&tk.hash).await.unwrap().expect("found");
    assert!(!seen.is_valid(t));
    close(a).await;
    close(b).await;
}

//! The contract of directory search.

use super::*;

/// A query matches usernames that start with it, not ones that merely contain it.
pub async fn search_by_username_prefix(store: &dyn Store) {
    let me = account(store, "me", "Me").await;
    account(store, "alice", "Wonderland").await;
    account(store, "alfred", "Butler").await;
    account(store, "malice", "Villain").await;
    account(store, "bob", "Builder").await;
    assert_eq!(search(store, "al", me.id, 10).await, ["alfred", "alice"], "username prefix");
    assert_eq!(search(store, "alic", me.id, 10).await, ["alice"], "longer prefix");
    assert!(
        search(store, "lic", me.id, 10).await.is_empty(),
        "a username that contains the query but does not start with it does not match"
    );
    assert_eq!(search(store, "bob", me.id, 10).await, ["bob"], "the whole username");
    assert!(search(store, "bobby", me.id, 10).await.is_empty(), "longer than any name");
}

/// A query matches display names that contain it anywhere, ignoring case, Unicode included.
pub async fn search_display_name_substring_ignores_case(store: &dyn Store) {
    let me = account(store, "me", "Me").await;
    account(store, "zoe", "Zoë ÅNGSTRÖM").await;
    account(store, "kate", "Kate Bishop").await;
    account(store, "hawkeye", "Clint BARTON").await;
    assert_eq!(search(store, "bish", me.id, 10).await, ["kate"], "display name substring");
    assert_eq!(search(store, "barton", me.id, 10).await, ["hawkeye"], "upper-case display name");
    assert_eq!(search(store, "clint b", me.id, 10).await, ["hawkeye"], "with a space");
    assert_eq!(search(store, "ångström", me.id, 10).await, ["zoe"], "non-ASCII folded");
    assert_eq!(search(store, "zoë", me.id, 10).await, ["zoe"], "non-ASCII substring");
    assert_eq!(search(store, "ngstr", me.id, 10).await, ["zoe"], "middle of a word");
    assert!(search(store, "angstrom", me.id, 10).await.is_empty(), "no accent folding");
}

/// Search leaves out non-discoverable accounts and `exclude`, orders by username and stops at
/// `limit`.
pub async fn search_filters_orders_and_limits(store: &dyn Store) {
    let me = account(store, "sam", "Sam Searcher").await;
    for name in ["sara", "sabine", "sal", "saoirse", "sasha"] {
        account(store, name, "Sailor").await;
    }
    let hidden = account(store, "sandy", "Hidden Sailor").await;
    store.set_profile(hidden.id, None, Some(false)).await.expect("set_profile");

    let all = search(store, "sa", me.id, 100).await;
    assert_eq!(
        all,
        ["sabine", "sal", "saoirse", "sara", "sasha"],
        "ordered by username, without the asker or the non-discoverable account"
    );
    assert_eq!(
        search(store, "sa", me.id, 2).await,
        ["sabine", "sal"],
        "at most `limit`, first by username"
    );
    assert_eq!(
        search(store, "sailor", me.id, 3).await,
        ["sabine", "sal", "saoirse"],
        "limit on name matches"
    );
    // Hits carry id, username and display name; excluding someone else brings the asker back.
    let sara = store.account_by_username("sara").await.expect("lookup").expect("sara exists");
    let hits = store.search("sam", sara.id, 100).await.expect("search");
    assert_eq!(
        hits,
        [UserHit { id: me.id, username: "sam".into(), display_name: "Sam Searcher".into() }],
        "a hit carries the account's id, username and display name"
    );
    assert_eq!(
        search(store, "sa", sara.id, 100).await,
        ["sabine", "sal", "sam", "saoirse", "sasha"],
        "`exclude` leaves out only that account"
    );
    assert!(search(store, "sandy", me.id, 100).await.is_empty(), "hidden by username too");
    assert!(search(store, "hidden", me.id, 100).await.is_empty(), "hidden by display name too");
    store.set_profile(hidden.id, None, Some(true)).await.expect("set_profile");
    assert_eq!(search(store, "sandy", me.id, 100).await, ["sandy"], "discoverable again");
}

/// `%`, `_` and `\` in a query match only themselves, never act as wildcards.
pub async fn search_treats_wildcards_literally(store: &dyn Store) {
    let me = account(store, "me", "Me").await;
    account(store, "a_b1", "Snake_Case").await;
    account(store, "axb1", "Axe").await;
    account(store, "percent", "100% sure").await;
    account(store, "plain", "Plain Jane").await;
    account(store, "bslash", r"back\slash").await;
    assert_eq!(
        search(store, "a_", me.id, 10).await,
        ["a_b1"],
        "`_` is not a one-character wildcard"
    );
    assert_eq!(search(store, "_", me.id, 10).await, ["a_b1"], "`_` matches only an underscore");
    assert_eq!(search(store, "%", me.id, 10).await, ["percent"], "`%` matches only a percent sign");
    assert_eq!(search(store, "0% s", me.id, 10).await, ["percent"], "literal `%` inside a query");
    assert!(
        search(store, "1%e", me.id, 10).await.is_empty(),
        "`%` is not a many-character wildcard"
    );
    assert_eq!(search(store, "\\", me.id, 10).await, ["bslash"], "a backslash matches itself");
    assert_eq!(search(store, "k\\s", me.id, 10).await, ["bslash"], "a backslash inside a query");
    assert!(search(store, "\\%", me.id, 10).await.is_empty(), "backslash-percent is literal too");
}

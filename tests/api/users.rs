//! The users admin API: role checks, VIP promotion, customer tags, cross-tenant isolation,
//! tenants.

use orderhost::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    backend_tests,
    helpers::{Backend, TestApp, assert_error, json_ok, new_client, spawn_app},
};

backend_tests!(
    admin_manages_its_tenant_users,
    customers_are_forbidden,
    admins_never_reach_another_tenant,
    operators_manage_tenants_and_any_tenant_users,
    deleting_a_user_ends_its_sessions,
    admins_set_replace_and_clear_customer_tags,
    bad_customer_tags_are_refused_with_their_field,
    only_the_customers_tenant_tags_it,
);

async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = new_client()
        .request(method, app.url(path))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("request")
}

async fn admin_manages_its_tenant_users(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app
        .user_with_role("boss@example.com", Role::Admin, None)
        .await;
    for i in 0..3 {
        app.register(&format!("c{i}@example.com"), None).await;
    }
    let page = json_ok(
        call(&app, reqwest::Method::GET, "/users?perPage=2", &admin, None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(page["total"], 4);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert_eq!(page["perPage"], 2);
    let page2 = json_ok(
        call(
            &app,
            reqwest::Method::GET,
            "/users?perPage=2&page=2",
            &admin,
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(page2["items"].as_array().unwrap().len(), 2);
    assert!(page2.to_string().find("passwordHash").is_none());

    let got = json_ok(
        call(
            &app,
            reqwest::Method::GET,
            "/users/C1@example.com",
            &admin,
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(got["email"], "c1@example.com");
    let vip = json_ok(
        call(
            &app,
            reqwest::Method::POST,
            "/users/c1@example.com/promote-vip",
            &admin,
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(vip["vip"], true);
    // The VIP flag reaches the customer's next token.
    let (client, _) = app.login_as("c1@example.com", None).await;
    let profile = json_ok(
        client.get(app.url("/auth/profile")).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(profile["vip"], true);
    let demoted = json_ok(
        call(
            &app,
            reqwest::Method::POST,
            "/users/c1@example.com/demote-vip",
            &admin,
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(demoted["vip"], false);

    let promoted = call(
        &app,
        reqwest::Method::PATCH,
        "/users/c2@example.com",
        &admin,
        Some(json!({ "role": "admin", "vip": true })),
    )
    .await;
    let promoted = json_ok(promoted, StatusCode::OK).await;
    assert_eq!(
        (promoted["role"].as_str(), promoted["vip"].as_bool()),
        (Some("admin"), Some(true))
    );
    // Admins cannot mint operators.
    let escalate = call(
        &app,
        reqwest::Method::PATCH,
        "/users/c0@example.com",
        &admin,
        Some(json!({ "role": "operator" })),
    )
    .await;
    assert_error(escalate, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let bad_role = call(
        &app,
        reqwest::Method::PATCH,
        "/users/c0@example.com",
        &admin,
        Some(json!({ "role": "king" })),
    )
    .await;
    assert_error(bad_role, StatusCode::UNPROCESSABLE_ENTITY, "INVALID_BODY").await;
    let missing = call(
        &app,
        reqwest::Method::GET,
        "/users/nobody@example.com",
        &admin,
        None,
    )
    .await;
    assert_error(missing, StatusCode::NOT_FOUND, "USER_NOT_FOUND").await;
    let myself = call(
        &app,
        reqwest::Method::DELETE,
        "/users/boss@example.com",
        &admin,
        None,
    )
    .await;
    assert_error(myself, StatusCode::CONFLICT, "CANNOT_DELETE_SELF").await;
    assert_eq!(
        call(
            &app,
            reqwest::Method::DELETE,
            "/users/c0@example.com",
            &admin,
            None
        )
        .await
        .status(),
        StatusCode::NO_CONTENT
    );
    let gone = call(
        &app,
        reqwest::Method::GET,
        "/users/c0@example.com",
        &admin,
        None,
    )
    .await;
    assert_error(gone, StatusCode::NOT_FOUND, "USER_NOT_FOUND").await;
}

async fn customers_are_forbidden(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register("cus@example.com", None).await;
    let (_, token) = app.login_as("cus@example.com", None).await;
    for (method, path) in [
        (reqwest::Method::GET, "/users"),
        (reqwest::Method::GET, "/users/cus@example.com"),
        (reqwest::Method::POST, "/users/cus@example.com/promote-vip"),
        (reqwest::Method::DELETE, "/users/cus@example.com"),
        (reqwest::Method::GET, "/tenants"),
    ] {
        assert_error(
            call(&app, method, path, &token, None).await,
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
        )
        .await;
    }
    let create = call(
        &app,
        reqwest::Method::POST,
        "/tenants",
        &token,
        Some(json!({ "slug": "mine" })),
    )
    .await;
    assert_error(create, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    // Unauthenticated: 401.
    let anonymous = new_client().get(app.url("/users")).send().await.unwrap();
    assert_error(anonymous, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;
}

async fn admins_never_reach_another_tenant(backend: Backend) {
    let app = spawn_app(backend).await;
    app.tenant("north").await;
    app.tenant("south").await;
    let north_admin = app
        .user_with_role("admin@north.example", Role::Admin, Some("north"))
        .await;
    app.register("victim@example.com", Some("south")).await;
    app.register("local@example.com", Some("north")).await;

    // The south user does not exist from north's point of view: 404, not 403.
    for (method, path) in [
        (reqwest::Method::GET, "/users/victim@example.com"),
        (
            reqwest::Method::POST,
            "/users/victim@example.com/promote-vip",
        ),
        (reqwest::Method::DELETE, "/users/victim@example.com"),
    ] {
        assert_error(
            call(&app, method, path, &north_admin, None).await,
            StatusCode::NOT_FOUND,
            "USER_NOT_FOUND",
        )
        .await;
    }
    // Naming the other tenant explicitly is a 404 as well.
    let named = call(
        &app,
        reqwest::Method::GET,
        "/users?tenant=south",
        &north_admin,
        None,
    )
    .await;
    assert_error(named, StatusCode::NOT_FOUND, "TENANT_NOT_FOUND").await;
    // The list holds only north's users.
    let page = json_ok(
        call(&app, reqwest::Method::GET, "/users", &north_admin, None).await,
        StatusCode::OK,
    )
    .await;
    let emails: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap())
        .collect();
    assert_eq!(page["total"], 2);
    assert!(emails.contains(&"local@example.com") && !emails.contains(&"victim@example.com"));
    // Nothing happened to the south user.
    let (client, _) = app.login_as("victim@example.com", Some("south")).await;
    let profile = json_ok(
        client.get(app.url("/auth/profile")).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(profile["vip"], false);
}

async fn operators_manage_tenants_and_any_tenant_users(backend: Backend) {
    let app = spawn_app(backend).await;
    let operator = app
        .user_with_role("ops@example.com", Role::Operator, None)
        .await;
    let created = call(
        &app,
        reqwest::Method::POST,
        "/tenants",
        &operator,
        Some(json!({ "slug": "Shop-1", "name": "Shop One" })),
    )
    .await;
    let created = json_ok(created, StatusCode::CREATED).await;
    assert_eq!(created["slug"], "shop-1");
    let dup = call(
        &app,
        reqwest::Method::POST,
        "/tenants",
        &operator,
        Some(json!({ "slug": "shop-1" })),
    )
    .await;
    assert_error(dup, StatusCode::CONFLICT, "TENANT_EXISTS").await;
    let bad = call(
        &app,
        reqwest::Method::POST,
        "/tenants",
        &operator,
        Some(json!({ "slug": "no spaces!" })),
    )
    .await;
    assert_error(bad, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    let list = json_ok(
        call(&app, reqwest::Method::GET, "/tenants", &operator, None).await,
        StatusCode::OK,
    )
    .await;
    let slugs: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["default", "shop-1"]);

    app.register("buyer@example.com", Some("shop-1")).await;
    let vip = call(
        &app,
        reqwest::Method::POST,
        "/users/buyer@example.com/promote-vip?tenant=shop-1",
        &operator,
        None,
    )
    .await;
    assert_eq!(json_ok(vip, StatusCode::OK).await["vip"], true);
    let grant = call(
        &app,
        reqwest::Method::PATCH,
        "/users/buyer@example.com?tenant=shop-1",
        &operator,
        Some(json!({ "role": "admin" })),
    )
    .await;
    assert_eq!(json_ok(grant, StatusCode::OK).await["role"], "admin");
    // The new shop admin cannot touch the operator, even within its tenant listing.
    let shop_admin = app.login_as("buyer@example.com", Some("shop-1")).await.1;
    let reach = call(
        &app,
        reqwest::Method::GET,
        "/users/ops@example.com",
        &shop_admin,
        None,
    )
    .await;
    assert_error(reach, StatusCode::NOT_FOUND, "USER_NOT_FOUND").await;
    let unknown = call(
        &app,
        reqwest::Method::GET,
        "/users?tenant=nowhere",
        &operator,
        None,
    )
    .await;
    assert_error(unknown, StatusCode::NOT_FOUND, "TENANT_NOT_FOUND").await;
}

async fn deleting_a_user_ends_its_sessions(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app
        .user_with_role("boss@example.com", Role::Admin, None)
        .await;
    app.register("leaver@example.com", None).await;
    let (client, _) = app.login_as("leaver@example.com", None).await;
    assert_eq!(
        call(
            &app,
            reqwest::Method::DELETE,
            "/users/leaver@example.com",
            &admin,
            None
        )
        .await
        .status(),
        StatusCode::NO_CONTENT
    );
    let refresh = client
        .post(app.url("/auth/refresh"))
        .header(reqwest::header::ORIGIN, app.origin())
        .send()
        .await
        .unwrap();
    assert_eq!(refresh.status(), StatusCode::UNAUTHORIZED);
    let profile = client.get(app.url("/auth/profile")).send().await.unwrap();
    assert_error(profile, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;
}

/// The `tags` of a JSON view.
fn tags(view: &Value) -> Vec<&str> {
    view["tags"]
        .as_array()
        .unwrap_or_else(|| panic!("tags in {view}"))
        .iter()
        .map(|t| t.as_str().expect("a tag is a string"))
        .collect()
}

async fn admins_set_replace_and_clear_customer_tags(backend: Backend) {
    // Arrange: a customer with a name and the VIP flag, no tags yet.
    let app = spawn_app(backend).await;
    let admin = app
        .user_with_role("boss@example.com", Role::Admin, None)
        .await;
    app.post(
        "/auth/register",
        &json!({ "email": "buyer@example.com", "password": crate::helpers::PASSWORD, "name": "Bea" }),
    )
    .await;
    let before = json_ok(
        call(
            &app,
            reqwest::Method::POST,
            "/users/buyer@example.com/promote-vip",
            &admin,
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(before["tags"], json!([]), "a new user has no tags");

    // Act: set tags as clients write them.
    let tagged = json_ok(
        call(
            &app,
            reqwest::Method::PATCH,
            "/users/buyer@example.com",
            &admin,
            Some(json!({ "tags": ["  Wholesale ", "b2b-gold", "WHOLESALE", "eu:de", "v1.2_x"] })),
        )
        .await,
        StatusCode::OK,
    )
    .await;

    // Assert: trimmed, lower-cased, deduplicated, sorted; nothing else changed.
    assert_eq!(tags(&tagged), ["b2b-gold", "eu:de", "v1.2_x", "wholesale"]);
    assert_eq!(
        (&tagged["role"], &tagged["vip"], &tagged["name"]),
        (&json!("customer"), &json!(true), &json!("Bea"))
    );
    let got = json_ok(
        call(
            &app,
            reqwest::Method::GET,
            "/users/buyer@example.com",
            &admin,
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(tags(&got), ["b2b-gold", "eu:de", "v1.2_x", "wholesale"]);
    let page = json_ok(
        call(&app, reqwest::Method::GET, "/users", &admin, None).await,
        StatusCode::OK,
    )
    .await;
    let listed = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "buyer@example.com")
        .expect("listed");
    assert_eq!(tags(listed), ["b2b-gold", "eu:de", "v1.2_x", "wholesale"]);
    assert_eq!(
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["email"] == "boss@example.com")
            .expect("the admin is listed")["tags"],
        json!([])
    );
    // The customer sees its own tags in its profile.
    let (client, _) = app.login_as("buyer@example.com", None).await;
    let profile = json_ok(
        client.get(app.url("/auth/profile")).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(tags(&profile), ["b2b-gold", "eu:de", "v1.2_x", "wholesale"]);

    // A change of something else keeps the tags, through PATCH and through the VIP routes.
    let renamed = json_ok(
        call(
            &app,
            reqwest::Method::PATCH,
            "/users/buyer@example.com",
            &admin,
            Some(json!({ "name": "Beatrice", "vip": false })),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(renamed["tags"], tagged["tags"]);
    let promoted = json_ok(
        call(
            &app,
            reqwest::Method::POST,
            "/users/buyer@example.com/promote-vip",
            &admin,
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(promoted["tags"], tagged["tags"]);

    // Act + Assert: a new list replaces the old one; `[]` clears it.
    let replaced = json_ok(
        call(
            &app,
            reqwest::Method::PATCH,
            "/users/buyer@example.com",
            &admin,
            Some(json!({ "tags": ["retail"] })),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(tags(&replaced), ["retail"]);
    let cleared = json_ok(
        call(
            &app,
            reqwest::Method::PATCH,
            "/users/buyer@example.com",
            &admin,
            Some(json!({ "tags": [] })),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(cleared["tags"], json!([]));
    // 32 distinct tags are the most, and reach the limit exactly.
    let most: Vec<String> = (0..32).map(|i| format!("t{i:02}")).collect();
    let full = json_ok(
        call(
            &app,
            reqwest::Method::PATCH,
            "/users/buyer@example.com",
            &admin,
            Some(json!({ "tags": most })),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(tags(&full), most);
    let longest = "x".repeat(64);
    let long = json_ok(
        call(
            &app,
            reqwest::Method::PATCH,
            "/users/buyer@example.com",
            &admin,
            Some(json!({ "tags": [longest] })),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(tags(&long), [longest.as_str()]);
}

async fn bad_customer_tags_are_refused_with_their_field(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let admin = app
        .user_with_role("boss@example.com", Role::Admin, None)
        .await;
    app.register("buyer@example.com", None).await;
    let set = json_ok(
        call(
            &app,
            reqwest::Method::PATCH,
            "/users/buyer@example.com",
            &admin,
            Some(json!({ "tags": ["kept"] })),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(tags(&set), ["kept"]);

    // Act + Assert: each refused with 422 VALIDATION_FAILED naming `tags` and the problem.
    let too_many: Vec<String> = (0..33).map(|i| format!("t{i}")).collect();
    for (value, problem) in [
        (json!(too_many), "33 distinct tags; at most 32"),
        (json!(["ok", "x".repeat(65)]), "tag 2 has 65 characters"),
        (json!(["b2b gold"]), "tag 1 (\"b2b gold\") holds ' '"),
        (json!(["vip!"]), "holds '!'"),
        (json!(["caf\u{e9}"]), "holds '\u{e9}'"),
        (json!(["a/b"]), "holds '/'"),
        (json!(["  "]), "tag 1 has 0 characters"),
        (json!(["zero\u{200b}width"]), "invisible"),
    ] {
        let response = call(
            &app,
            reqwest::Method::PATCH,
            "/users/buyer@example.com",
            &admin,
            Some(json!({ "tags": value })),
        )
        .await;
        let body = assert_error(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
        assert_eq!(body["error"]["details"]["field"], "tags", "{body}");
        let said = body["error"]["details"]["problem"].as_str().unwrap();
        assert!(said.contains(problem), "{problem:?} not in {said:?}");
    }
    // Not a list of strings: the body's shape is wrong.
    for value in [json!("wholesale"), json!([1]), json!({ "a": 1 })] {
        let response = call(
            &app,
            reqwest::Method::PATCH,
            "/users/buyer@example.com",
            &admin,
            Some(json!({ "tags": value })),
        )
        .await;
        assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "INVALID_BODY").await;
    }
    // A bad tag next to a good change refuses the whole request.
    let mixed = call(
        &app,
        reqwest::Method::PATCH,
        "/users/buyer@example.com",
        &admin,
        Some(json!({ "vip": true, "tags": ["no way"] })),
    )
    .await;
    assert_error(mixed, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;

    // Nothing of the refused requests was written.
    let after = json_ok(
        call(
            &app,
            reqwest::Method::GET,
            "/users/buyer@example.com",
            &admin,
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!((tags(&after), &after["vip"]), (vec!["kept"], &json!(false)));
}

async fn only_the_customers_tenant_tags_it(backend: Backend) {
    // Arrange: a customer of south, an admin of north, a south customer, an operator.
    let app = spawn_app(backend).await;
    app.tenant("north").await;
    app.tenant("south").await;
    let north_admin = app
        .user_with_role("admin@north.example", Role::Admin, Some("north"))
        .await;
    let operator = app
        .user_with_role("ops@example.com", Role::Operator, None)
        .await;
    app.register("victim@example.com", Some("south")).await;
    app.register("peer@example.com", Some("south")).await;
    let (_, customer) = app.login_as("peer@example.com", Some("south")).await;
    let body = json!({ "tags": ["blocked"] });

    // Act + Assert: north's admin finds no such user, with or without naming south.
    let direct = call(
        &app,
        reqwest::Method::PATCH,
        "/users/victim@example.com",
        &north_admin,
        Some(body.clone()),
    )
    .await;
    assert_error(direct, StatusCode::NOT_FOUND, "USER_NOT_FOUND").await;
    let named = call(
        &app,
        reqwest::Method::PATCH,
        "/users/victim@example.com?tenant=south",
        &north_admin,
        Some(body.clone()),
    )
    .await;
    assert_error(named, StatusCode::NOT_FOUND, "TENANT_NOT_FOUND").await;
    // A customer of the same tenant may not tag anyone, itself included.
    for email in ["victim@example.com", "peer@example.com"] {
        let response = call(
            &app,
            reqwest::Method::PATCH,
            &format!("/users/{email}"),
            &customer,
            Some(body.clone()),
        )
        .await;
        assert_error(response, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    }
    let (client, _) = app.login_as("victim@example.com", Some("south")).await;
    let profile = json_ok(
        client.get(app.url("/auth/profile")).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(profile["tags"], json!([]));

    // An operator tags south's customer by naming the tenant.
    let tagged = json_ok(
        call(
            &app,
            reqwest::Method::PATCH,
            "/users/victim@example.com?tenant=south",
            &operator,
            Some(json!({ "tags": ["Reviewed"] })),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(tags(&tagged), ["reviewed"]);
}

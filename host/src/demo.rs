//! The demo shop: a small documented catalog and demo users in the default tenant, so a
//! newcomer's first `orderhost serve --demo` (or `orderhost demo`, which seeds and exits)
//! shows a shop that is not empty. Seeding is idempotent — what exists is left as it is,
//! so a second run changes nothing — and refused in production, where published
//! passwords have no place.

use crate::{
    auth::{Role, password},
    catalog::{self, CatalogError, Currency, MinorUnits, Money, NewProduct, Sku},
    clock::{Clock, SystemClock},
    config::Environment,
    store::{DEFAULT_TENANT_ID, DEFAULT_TENANT_SLUG, Store},
    users::{self, Email},
};

/// A demo product: sku, name, price in euro cents, units in stock.
pub struct DemoProduct {
    /// Sku in the default tenant.
    pub sku: &'static str,
    /// Display name.
    pub name: &'static str,
    /// Unit price in cents (EUR).
    pub unit_price: i64,
    /// Units in stock when first seeded.
    pub stock: i64,
}

/// The demo catalog (README, "Run it"). `DEMO-LAMP` is the low-stock item.
pub const PRODUCTS: &[DemoProduct] = &[
    DemoProduct {
        sku: "DEMO-MUG",
        name: "Enamel mug",
        unit_price: 1_250,
        stock: 100,
    },
    DemoProduct {
        sku: "DEMO-TEE",
        name: "Organic T-shirt",
        unit_price: 2_400,
        stock: 60,
    },
    DemoProduct {
        sku: "DEMO-HOODIE",
        name: "Zip hoodie",
        unit_price: 5_900,
        stock: 25,
    },
    DemoProduct {
        sku: "DEMO-CAP",
        name: "Canvas cap",
        unit_price: 1_800,
        stock: 40,
    },
    DemoProduct {
        sku: "DEMO-BOTTLE",
        name: "Steel water bottle",
        unit_price: 2_200,
        stock: 35,
    },
    DemoProduct {
        sku: "DEMO-STICKERS",
        name: "Sticker pack",
        unit_price: 399,
        stock: 500,
    },
    DemoProduct {
        sku: "DEMO-LAMP",
        name: "Desk lamp (last units)",
        unit_price: 7_900,
        stock: 3,
    },
];

/// A demo user of the default tenant, with its published password.
pub struct DemoUser {
    /// Email.
    pub email: &'static str,
    /// Password (published: demo only).
    pub password: &'static str,
    /// Role.
    pub role: Role,
    /// VIP customer.
    pub vip: bool,
}

/// The demo users (README, "Run it").
pub const USERS: &[DemoUser] = &[
    DemoUser {
        email: "demo-customer@orderhost.local",
        password: "demo-customer-pass",
        role: Role::Customer,
        vip: false,
    },
    DemoUser {
        email: "demo-vip@orderhost.local",
        password: "demo-vip-pass",
        role: Role::Customer,
        vip: true,
    },
    DemoUser {
        email: "demo-admin@orderhost.local",
        password: "demo-admin-pass",
        role: Role::Admin,
        vip: false,
    },
    DemoUser {
        email: "demo-operator@orderhost.local",
        password: "demo-operator-pass",
        role: Role::Operator,
        vip: false,
    },
];

/// Why the demo shop was not seeded.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Asked for in production.
    #[error(
        "the demo shop is refused in production (ORDERHOST_ENV=production): it creates users whose passwords are published; run it in development only"
    )]
    Production,
    /// The database failed.
    #[error("seeding the demo shop failed: {0}")]
    Db(#[from] sqlx::Error),
    /// Anything else (hashing a password).
    #[error("seeding the demo shop failed: {0}")]
    Other(String),
}

/// What one seeding did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SeedReport {
    /// Demo products created now (the others existed).
    pub products_created: usize,
    /// Demo users created now (the others existed).
    pub users_created: usize,
}

/// Refuses the demo shop in production.
pub fn check_environment(environment: Environment) -> Result<(), DemoError> {
    if environment == Environment::Production {
        return Err(DemoError::Production);
    }
    Ok(())
}

/// Creates whatever of the demo catalog and users is missing in the default tenant; an
/// existing sku or email is left untouched (its stock, price or password included).
pub async fn seed(store: &Store, environment: Environment) -> Result<SeedReport, DemoError> {
    check_environment(environment)?;
    let now = SystemClock.now_ms();
    let mut report = SeedReport::default();
    let eur = Currency::parse("EUR").map_err(|e| DemoError::Other(e.problem))?;
    for product in PRODUCTS {
        let new = NewProduct {
            sku: Sku::parse(product.sku).map_err(|e| DemoError::Other(e.problem))?,
            name: product.name.to_owned(),
            description: format!("Demo product ({}).", product.sku),
            images: Vec::new(),
            price: Money {
                amount: MinorUnits::parse("unitPrice", product.unit_price)
                    .map_err(|e| DemoError::Other(e.problem))?,
                currency: eur.clone(),
            },
            active: true,
            initial_stock: product.stock,
            tags: crate::tags::Tags::default(),
            vendor: None,
            category: None,
        };
        match catalog::create(store, DEFAULT_TENANT_ID, &new, None, now).await {
            Ok(_) => report.products_created += 1,
            Err(CatalogError::SkuTaken(_)) => {}
            Err(CatalogError::Db(e)) => return Err(e.into()),
            Err(other) => return Err(DemoError::Other(other.to_string())),
        }
    }
    for user in USERS {
        let email = Email::parse(user.email).map_err(|e| DemoError::Other(e.problem))?;
        if users::find_by_email(store, DEFAULT_TENANT_ID, email.as_str())
            .await?
            .is_some()
        {
            continue;
        }
        let hash = password::hash(user.password.to_owned())
            .await
            .map_err(|e| DemoError::Other(e.to_string()))?;
        match users::create(
            store,
            DEFAULT_TENANT_ID,
            &email,
            None,
            &hash,
            user.role,
            now,
        )
        .await
        {
            Ok(_) => report.users_created += 1,
            // Created meanwhile by a concurrent seeding: as good as ours.
            Err(users::CreateUserError::EmailTaken) => continue,
            Err(users::CreateUserError::Db(e)) => return Err(e.into()),
        }
        if user.vip {
            let change = users::UserUpdate {
                role: user.role,
                vip: true,
                name: None,
                tags: None,
            };
            users::update(store, DEFAULT_TENANT_ID, email.as_str(), &change, now)
                .await
                .map_err(|e| DemoError::Other(e.to_string()))?;
        }
    }
    Ok(report)
}

/// The text printed after seeding: the tenant, the users with their passwords, the
/// catalog.
pub fn summary(report: SeedReport) -> String {
    let mut text = format!(
        "demo shop in tenant {DEFAULT_TENANT_SLUG:?} ({} products and {} users created now; \
         demo only, never in production)\n  users (email / password / role):\n",
        report.products_created, report.users_created
    );
    for user in USERS {
        text.push_str(&format!(
            "    {:<32} {:<20} {}{}\n",
            user.email,
            user.password,
            user.role.as_str(),
            if user.vip { " (VIP)" } else { "" }
        ));
    }
    text.push_str("  catalog (sku / price EUR / stock when seeded):\n");
    for product in PRODUCTS {
        text.push_str(&format!(
            "    {:<14} {:>4}.{:02}  {:>4}  {}\n",
            product.sku,
            product.unit_price / 100,
            product.unit_price % 100,
            product.stock,
            product.name
        ));
    }
    text
}

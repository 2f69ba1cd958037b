//! Misbehaving test component: a well-formed component that exports an interface of
//! another package (`acme:rules/check`), so it targets none of `ordering:policy`'s
//! worlds. Upload validation must refuse it with `UNKNOWN_WORLD`.

wit_bindgen::generate!({
    inline: "
        package acme:rules@1.0.0;
        interface check {
            check: func(order: string) -> bool;
        }
        world rules {
            export check;
        }
    ",
});

use exports::acme::rules::check::Guest;

struct UnknownWorld;

impl Guest for UnknownWorld {
    fn check(order: String) -> bool {
        !order.is_empty()
    }
}

export!(UnknownWorld);

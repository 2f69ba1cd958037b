//! Money: integer minor units and ISO 4217 currency codes. The API also shows a decimal
//! string, formatted here from the integer — never through a float.

use std::fmt;

use super::FieldError;

/// Largest unit price accepted, in minor units (10^12: ten billion in a 2-decimal
/// currency). Keeps `price × quantity` of an order far from `i64` overflow.
pub const MAX_UNIT_PRICE: i64 = 1_000_000_000_000;

/// A non-negative amount in a currency's minor units (cents for EUR, yen for JPY).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MinorUnits(i64);

impl MinorUnits {
    /// Parses an amount between 0 and [`MAX_UNIT_PRICE`]; `field` names it in the error.
    pub fn parse(field: &'static str, value: i64) -> Result<Self, FieldError> {
        if (0..=MAX_UNIT_PRICE).contains(&value) {
            Ok(Self(value))
        } else {
            Err(FieldError::new(
                field,
                format!("an integer number of minor units between 0 and {MAX_UNIT_PRICE}"),
            ))
        }
    }

    /// The amount.
    pub fn get(self) -> i64 {
        self.0
    }
}

/// A currency code: three upper-case ASCII letters (`EUR`, `JPY`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Currency(String);

impl Currency {
    /// Parses a code; lower case is refused rather than guessed.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        if raw.len() == 3 && raw.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(FieldError::new(
                "currency",
                "three upper-case letters (ISO 4217), e.g. EUR",
            ))
        }
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Digits after the decimal point in this currency.
    pub fn exponent(&self) -> u32 {
        exponent(&self.0)
    }
}

/// Digits after the decimal point of an ISO 4217 currency: 0 for the zero-decimal
/// currencies, 3 for the three-decimal ones, 2 for every other code.
pub fn exponent(currency: &str) -> u32 {
    match currency {
        "JPY" | "KRW" | "VND" | "CLP" | "ISK" | "XOF" | "XAF" => 0,
        "BHD" | "KWD" | "JOD" | "OMR" | "TND" | "IQD" | "LYD" => 3,
        _ => 2,
    }
}

/// Formats `amount` minor units of `currency` as a decimal string: `1250 EUR` → `"12.50"`,
/// `1250 JPY` → `"1250"`, `1250 KWD` → `"1.250"`. Integer arithmetic only.
pub fn format_minor(amount: i64, currency: &str) -> String {
    let digits = exponent(currency);
    let sign = if amount < 0 { "-" } else { "" };
    // `unsigned_abs` so that even i64::MIN formats instead of overflowing.
    let magnitude = amount.unsigned_abs();
    if digits == 0 {
        return format!("{sign}{magnitude}");
    }
    let scale = 10u64.pow(digits);
    format!(
        "{sign}{}.{:0width$}",
        magnitude / scale,
        magnitude % scale,
        width = digits as usize
    )
}

/// A non-negative decimal amount in a currency's major unit, kept as its exact digits
/// (`999.99` is 99999 × 10⁻²): parsed from a JSON number's text or a string, never
/// through a float, so `0.1 + 0.2`-style errors cannot change a price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal {
    digits: u128,
    scale: u32,
}

/// Why a decimal amount was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    /// Not a plain decimal number.
    #[error("a decimal number such as 999.99")]
    Malformed,
    /// Below zero.
    #[error("must not be negative")]
    Negative,
    /// More digits than any price needs.
    #[error("too large")]
    TooLarge,
    /// More fraction digits than the currency has.
    #[error("{currency} has {exponent} decimal(s)")]
    TooPrecise {
        /// The currency.
        currency: String,
        /// Its decimals.
        exponent: u32,
    },
}

impl Decimal {
    /// Parses `12`, `12.5`, `999.99`, `1e3`, `9.9999E2` (JSON number syntax), exactly.
    pub fn parse(text: &str) -> Result<Self, DecimalError> {
        let text = text.trim();
        let (negative, rest) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (mantissa, exp) = match rest.find(['e', 'E']) {
            Some(at) => {
                let exp: i32 = rest[at + 1..]
                    .strip_prefix('+')
                    .unwrap_or(&rest[at + 1..])
                    .parse()
                    .map_err(|_| DecimalError::Malformed)?;
                (&rest[..at], exp)
            }
            None => (rest, 0),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if int.is_empty()
            || (mantissa.contains('.') && frac.is_empty())
            || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
        {
            return Err(DecimalError::Malformed);
        }
        let all: String = format!("{int}{frac}");
        let significant = all.trim_start_matches('0');
        // 30 significant digits is far beyond any price and keeps u128 from overflowing.
        if significant.len() > 30 || !(-40..=40).contains(&exp) {
            return Err(DecimalError::TooLarge);
        }
        let mut digits: u128 = if significant.is_empty() {
            0
        } else {
            significant.parse().map_err(|_| DecimalError::Malformed)?
        };
        let mut scale = i64::try_from(frac.len()).unwrap_or(i64::MAX) - i64::from(exp);
        while scale < 0 {
            digits = digits.checked_mul(10).ok_or(DecimalError::TooLarge)?;
            scale += 1;
        }
        if negative && digits != 0 {
            return Err(DecimalError::Negative);
        }
        Ok(Self {
            digits,
            scale: u32::try_from(scale).map_err(|_| DecimalError::TooLarge)?,
        })
    }

    /// The amount in `currency`'s minor units; refused when it has more (non-zero)
    /// fraction digits than the currency or exceeds [`MAX_UNIT_PRICE`].
    pub fn to_minor(self, currency: &str) -> Result<i64, DecimalError> {
        let exponent = exponent(currency);
        let (mut digits, mut scale) = (self.digits, self.scale);
        // Trailing zeros beyond the currency's decimals are harmless: 12.500 EUR is 1250.
        while scale > exponent && digits % 10 == 0 {
            digits /= 10;
            scale -= 1;
        }
        if scale > exponent {
            return Err(DecimalError::TooPrecise {
                currency: currency.to_owned(),
                exponent,
            });
        }
        let minor = 10u128
            .checked_pow(exponent - scale)
            .and_then(|f| digits.checked_mul(f))
            .ok_or(DecimalError::TooLarge)?;
        i64::try_from(minor)
            .ok()
            .filter(|m| *m <= MAX_UNIT_PRICE)
            .ok_or(DecimalError::TooLarge)
    }
}

/// An amount with its currency; `Display` is the decimal string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Money {
    /// Minor units.
    pub amount: MinorUnits,
    /// Currency.
    pub currency: Currency,
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_minor(self.amount.get(), self.currency.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_decimal_currencies_pad_the_cents() {
        assert_eq!(format_minor(1250, "EUR"), "12.50");
        assert_eq!(format_minor(5, "USD"), "0.05");
        assert_eq!(format_minor(0, "EUR"), "0.00");
        assert_eq!(format_minor(100, "GBP"), "1.00");
        assert_eq!(format_minor(123_456_789, "XYZ"), "1234567.89");
    }

    #[test]
    fn zero_and_three_decimal_currencies() {
        for code in ["JPY", "KRW", "VND", "CLP", "ISK", "XOF", "XAF"] {
            assert_eq!(format_minor(1250, code), "1250", "{code}");
        }
        for code in ["BHD", "KWD", "JOD", "OMR", "TND", "IQD", "LYD"] {
            assert_eq!(format_minor(1250, code), "1.250", "{code}");
        }
        assert_eq!(format_minor(7, "KWD"), "0.007");
    }

    #[test]
    fn extremes_do_not_overflow() {
        assert_eq!(format_minor(i64::MAX, "EUR"), "92233720368547758.07");
        assert_eq!(format_minor(-5, "EUR"), "-0.05");
        assert_eq!(format_minor(i64::MIN, "JPY"), "-9223372036854775808");
    }

    #[test]
    fn money_displays_as_decimal() {
        let money = Money {
            amount: MinorUnits::parse("unitPrice", 1999).unwrap(),
            currency: Currency::parse("EUR").unwrap(),
        };
        assert_eq!(money.to_string(), "19.99");
        assert_eq!(money.currency.exponent(), 2);
    }

    #[test]
    fn decimals_convert_exactly_to_minor_units() {
        let minor = |text: &str, currency: &str| Decimal::parse(text)?.to_minor(currency);
        assert_eq!(minor("999.99", "EUR"), Ok(99_999));
        assert_eq!(minor("0.1", "EUR"), Ok(10));
        assert_eq!(minor("1000", "EUR"), Ok(100_000));
        assert_eq!(minor("12.500", "EUR"), Ok(1250));
        assert_eq!(minor("9.9999E2", "EUR"), Ok(99_999));
        assert_eq!(minor("1e3", "JPY"), Ok(1000));
        assert_eq!(minor("1.234", "KWD"), Ok(1234));
        assert_eq!(minor("-0", "EUR"), Ok(0));
        assert_eq!(
            minor("999.999", "EUR"),
            Err(DecimalError::TooPrecise {
                currency: "EUR".into(),
                exponent: 2
            })
        );
        assert!(matches!(
            minor("12.5", "JPY"),
            Err(DecimalError::TooPrecise { .. })
        ));
        assert_eq!(minor("-1.00", "EUR"), Err(DecimalError::Negative));
        assert_eq!(minor("1e40", "EUR"), Err(DecimalError::TooLarge));
        assert_eq!(minor("10000000000", "EUR"), Ok(MAX_UNIT_PRICE));
        assert_eq!(minor("10000000000.01", "EUR"), Err(DecimalError::TooLarge));
        for bad in ["", ".5", "5.", "1,5", "0x10", "NaN", "1e", "--1", "1.2.3"] {
            assert_eq!(Decimal::parse(bad), Err(DecimalError::Malformed), "{bad}");
        }
    }

    #[test]
    fn currency_and_amount_parsing() {
        assert!(Currency::parse("EUR").is_ok());
        for bad in ["eur", "EU", "EURO", "E1R", "ÉUR", ""] {
            assert_eq!(Currency::parse(bad).unwrap_err().field, "currency", "{bad}");
        }
        assert!(MinorUnits::parse("unitPrice", 0).is_ok());
        assert!(MinorUnits::parse("unitPrice", MAX_UNIT_PRICE).is_ok());
        assert_eq!(
            MinorUnits::parse("unitPrice", -1).unwrap_err().field,
            "unitPrice"
        );
        assert!(MinorUnits::parse("unit_price", MAX_UNIT_PRICE + 1).is_err());
    }
}

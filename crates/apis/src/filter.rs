//! The `filter` list parameter: `field.op(args)` clauses.
//!
//! Mirrors Cloudpods `pkg/util/filterclause` (`ParseFilterClause`,
//! `ParseJointFilterClause`), used by `db.ListItemFilter` for `filter=` and
//! `joint_filter=` query parameters, with stricter and better-reported
//! validation:
//!
//! * Syntax: `FIELD.OP(ARGS)`, e.g. `name.equals('web')`,
//!   `status.in(running,ready)`, `created_at.between('2024-01-01','2024-02-01')`,
//!   `description.isnull()`. Surrounding whitespace is ignored.
//! * `FIELD` matches `[A-Za-z_][A-Za-z0-9_]*` and is at most
//!   [`MAX_FIELD_LEN`] bytes.
//! * `OP` is one of [`FilterOp`], case-insensitive.
//! * `ARGS` are comma-separated. An argument may be wrapped in single or double
//!   quotes; inside quotes, commas and parentheses are literal and a backslash
//!   escapes the closing quote or a backslash (`\'`, `\"`, `\\`; any other
//!   `\x` is kept as is). Quoted arguments are kept verbatim, unquoted ones
//!   are trimmed and must not be empty (`in(a,,b)` is an error; `equals('')`
//!   is an empty argument). Unquoted arguments may contain quotes and
//!   parentheses that are not at their start (the arguments run to the last
//!   `)` of the clause, like Cloudpods' greedy `\((.*)\)`).
//! * Arity: `between` takes exactly 2 arguments; `in`/`notin` at least 1;
//!   `isnull`, `isnotnull`, `isempty`, `isnotempty`, `isnullorempty` none
//!   (`()` or `( )`); every other operator exactly 1.
//! * A clause is at most [`MAX_FILTER_LEN`] bytes.
//! * Joint filters: `TABLE.RELATED_KEY(ORIGIN_KEY).FIELD.OP(ARGS)`, e.g.
//!   `guestnetworks.guest_id(id).ip_addr.equals('10.0.0.1')`: rows of the
//!   current table whose `ORIGIN_KEY` equals `TABLE.RELATED_KEY` of a `TABLE`
//!   row matching the inner filter. All three names follow the field rules.
//!
//! [`Filter`]'s `Display` writes the canonical form, every argument
//! single-quoted with `\` and `'` escaped, which [`parse_filter`] reads back
//! unchanged.

use std::fmt;
use std::str::FromStr;

/// Maximum length of a filter clause, in bytes.
pub const MAX_FILTER_LEN: usize = 4096;

/// Maximum length of a field (or table / key) name, in bytes.
pub const MAX_FIELD_LEN: usize = 64;

/// Longest prefix of the input quoted in error messages, in bytes.
const MAX_ERROR_INPUT: usize = 200;

/// A filter operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FilterOp {
    In,
    NotIn,
    Between,
    Ge,
    Gt,
    Le,
    Lt,
    Like,
    Contains,
    StartsWith,
    EndsWith,
    Equals,
    NotEquals,
    IsNull,
    IsNotNull,
    IsEmpty,
    IsNotEmpty,
    IsNullOrEmpty,
}

/// How many arguments an operator takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    /// Exactly this many.
    Exactly(usize),
    /// At least this many.
    AtLeast(usize),
}

impl Arity {
    /// Whether `n` arguments are acceptable.
    pub fn accepts(self, n: usize) -> bool {
        match self {
            Arity::Exactly(k) => n == k,
            Arity::AtLeast(k) => n >= k,
        }
    }

    fn describe(self) -> String {
        let plural = |k: usize| if k == 1 { "argument" } else { "arguments" };
        match self {
            Arity::Exactly(0) => "no arguments".to_owned(),
            Arity::Exactly(k) => format!("{k} {}", plural(k)),
            Arity::AtLeast(k) => format!("at least {k} {}", plural(k)),
        }
    }
}

impl FilterOp {
    /// Every operator, in documentation order.
    pub const ALL: [FilterOp; 18] = [
        FilterOp::In,
        FilterOp::NotIn,
        FilterOp::Between,
        FilterOp::Ge,
        FilterOp::Gt,
        FilterOp::Le,
        FilterOp::Lt,
        FilterOp::Like,
        FilterOp::Contains,
        FilterOp::StartsWith,
        FilterOp::EndsWith,
        FilterOp::Equals,
        FilterOp::NotEquals,
        FilterOp::IsNull,
        FilterOp::IsNotNull,
        FilterOp::IsEmpty,
        FilterOp::IsNotEmpty,
        FilterOp::IsNullOrEmpty,
    ];

    /// The canonical (lowercase) wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            FilterOp::In => "in",
            FilterOp::NotIn => "notin",
            FilterOp::Between => "between",
            FilterOp::Ge => "ge",
            FilterOp::Gt => "gt",
            FilterOp::Le => "le",
            FilterOp::Lt => "lt",
            FilterOp::Like => "like",
            FilterOp::Contains => "contains",
            FilterOp::StartsWith => "startswith",
            FilterOp::EndsWith => "endswith",
            FilterOp::Equals => "equals",
            FilterOp::NotEquals => "notequals",
            FilterOp::IsNull => "isnull",
            FilterOp::IsNotNull => "isnotnull",
            FilterOp::IsEmpty => "isempty",
            FilterOp::IsNotEmpty => "isnotempty",
            FilterOp::IsNullOrEmpty => "isnullorempty",
        }
    }

    /// Look an operator up by name, case-insensitively.
    pub fn from_name(name: &str) -> Option<FilterOp> {
        FilterOp::ALL
            .into_iter()
            .find(|op| op.as_str().eq_ignore_ascii_case(name))
    }

    /// The number of arguments the operator takes.
    pub fn arity(self) -> Arity {
        match self {
            FilterOp::Between => Arity::Exactly(2),
            FilterOp::In | FilterOp::NotIn => Arity::AtLeast(1),
            FilterOp::IsNull
            | FilterOp::IsNotNull
            | FilterOp::IsEmpty
            | FilterOp::IsNotEmpty
            | FilterOp::IsNullOrEmpty => Arity::Exactly(0),
            _ => Arity::Exactly(1),
        }
    }
}

impl fmt::Display for FilterOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FilterOp {
    type Err = FilterError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FilterOp::from_name(s).ok_or_else(|| FilterError::UnknownOp {
            input: clip(s),
            op: clip(s),
        })
    }
}

/// A parsed `field.op(args)` clause.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Filter {
    pub field: String,
    pub op: FilterOp,
    pub args: Vec<String>,
}

/// A parsed `table.related_key(origin_key).field.op(args)` clause.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JointFilter {
    pub table: String,
    pub related_key: String,
    pub origin_key: String,
    pub filter: Filter,
}

/// Why a filter clause was rejected. Every message starts with
/// `filter "<input>":` (long inputs are shortened).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("filter {input:?}: too long ({len} bytes, at most {max} allowed)", max = MAX_FILTER_LEN)]
    TooLong { input: String, len: usize },
    #[error("filter {input:?}: expected FIELD.OP(ARGS), {reason}")]
    Syntax { input: String, reason: String },
    #[error("filter {input:?}: expected TABLE.RELATED_KEY(ORIGIN_KEY).FIELD.OP(ARGS), {reason}")]
    JointSyntax { input: String, reason: String },
    #[error(
        "filter {input:?}: invalid {what} {name:?} (must match [A-Za-z_][A-Za-z0-9_]* and be at most {max} bytes)",
        max = MAX_FIELD_LEN
    )]
    InvalidName {
        input: String,
        what: &'static str,
        name: String,
    },
    #[error("filter {input:?}: unknown operator {op:?}")]
    UnknownOp { input: String, op: String },
    #[error("filter {input:?}: {op} takes {expected}, got {got}")]
    Arity {
        input: String,
        op: FilterOp,
        expected: String,
        got: usize,
    },
    #[error("filter {input:?}: unterminated quoted argument {arg}")]
    UnterminatedQuote { input: String, arg: usize },
    #[error("filter {input:?}: unexpected {found:?} after quoted argument {arg}")]
    TrailingAfterQuote {
        input: String,
        arg: usize,
        found: char,
    },
    #[error("filter {input:?}: argument {arg} is empty (quote it to pass an empty string)")]
    EmptyArg { input: String, arg: usize },
}

/// Shorten user input for error messages, on a char boundary.
fn clip(s: &str) -> String {
    if s.len() <= MAX_ERROR_INPUT {
        return s.to_owned();
    }
    let mut end = MAX_ERROR_INPUT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

fn valid_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    s.len() <= MAX_FIELD_LEN
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn check_name(input: &str, what: &'static str, name: &str) -> Result<(), FilterError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(FilterError::InvalidName {
            input: clip(input),
            what,
            name: clip(name),
        })
    }
}

fn check_len(input: &str) -> Result<(), FilterError> {
    if input.len() > MAX_FILTER_LEN {
        Err(FilterError::TooLong {
            input: clip(input),
            len: input.len(),
        })
    } else {
        Ok(())
    }
}

fn syntax(input: &str, reason: &str) -> FilterError {
    FilterError::Syntax {
        input: clip(input),
        reason: reason.to_owned(),
    }
}

/// Split the text between the parentheses into arguments. `input` is the
/// whole clause, for error messages.
fn parse_args(inner: &str, input: &str) -> Result<Vec<String>, FilterError> {
    let mut args = Vec::new();
    if inner.trim().is_empty() {
        return Ok(args);
    }
    let mut chars = inner.char_indices().peekable();
    loop {
        let n = args.len() + 1;
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        match chars.peek().copied() {
            Some((_, q @ ('\'' | '"'))) => {
                chars.next();
                let mut arg = String::new();
                let mut closed = false;
                while let Some((_, c)) = chars.next() {
                    match c {
                        '\\' => match chars.peek().copied() {
                            Some((_, e)) if e == q || e == '\\' => {
                                arg.push(e);
                                chars.next();
                            }
                            _ => arg.push('\\'),
                        },
                        c if c == q => {
                            closed = true;
                            break;
                        }
                        c => arg.push(c),
                    }
                }
                if !closed {
                    return Err(FilterError::UnterminatedQuote {
                        input: clip(input),
                        arg: n,
                    });
                }
                args.push(arg);
                while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
                match chars.next() {
                    None => return Ok(args),
                    Some((_, ',')) => {}
                    Some((_, found)) => {
                        return Err(FilterError::TrailingAfterQuote {
                            input: clip(input),
                            arg: n,
                            found,
                        });
                    }
                }
            }
            Some((start, _)) => {
                let end = inner[start..].find(',').map_or(inner.len(), |i| start + i);
                let arg = inner[start..end].trim();
                if arg.is_empty() {
                    return Err(FilterError::EmptyArg {
                        input: clip(input),
                        arg: n,
                    });
                }
                args.push(arg.to_owned());
                while chars.next_if(|(i, _)| *i < end).is_some() {}
                if chars.next().is_none() {
                    return Ok(args);
                }
            }
            // Nothing after a comma (or only whitespace): `in(a,)`.
            None => {
                return Err(FilterError::EmptyArg {
                    input: clip(input),
                    arg: n,
                });
            }
        }
    }
}

/// Parse `field.op(args)`; `input` is the whole clause, for error messages.
fn parse_clause(s: &str, input: &str) -> Result<Filter, FilterError> {
    let Some((field, rest)) = s.split_once('.') else {
        return Err(syntax(input, "missing \".\" after the field name"));
    };
    check_name(input, "field name", field)?;
    let Some((op_name, rest)) = rest.split_once('(') else {
        return Err(syntax(input, "missing \"(\" after the operator"));
    };
    let op = FilterOp::from_name(op_name.trim_end()).ok_or_else(|| FilterError::UnknownOp {
        input: clip(input),
        op: clip(op_name),
    })?;
    let Some(inner) = rest.strip_suffix(')') else {
        return Err(syntax(input, "missing closing \")\" at the end"));
    };
    let args = parse_args(inner, input)?;
    let arity = op.arity();
    if !arity.accepts(args.len()) {
        return Err(FilterError::Arity {
            input: clip(input),
            op,
            expected: arity.describe(),
            got: args.len(),
        });
    }
    Ok(Filter {
        field: field.to_owned(),
        op,
        args,
    })
}

/// Parse a `filter` clause such as `status.in(running,ready)`.
pub fn parse_filter(s: &str) -> Result<Filter, FilterError> {
    check_len(s)?;
    parse_clause(s.trim(), s)
}

/// Parse a `joint_filter` clause such as
/// `guestnetworks.guest_id(id).ip_addr.equals('10.0.0.1')`.
pub fn parse_joint_filter(s: &str) -> Result<JointFilter, FilterError> {
    check_len(s)?;
    let joint = |reason: &str| FilterError::JointSyntax {
        input: clip(s),
        reason: reason.to_owned(),
    };
    let t = s.trim();
    let (table, rest) = t
        .split_once('.')
        .ok_or_else(|| joint("missing \".\" after the table name"))?;
    check_name(s, "table name", table)?;
    let (related_key, rest) = rest
        .split_once('(')
        .ok_or_else(|| joint("missing \"(\" after the related key"))?;
    check_name(s, "related key", related_key)?;
    let (origin_key, rest) = rest
        .split_once(')')
        .ok_or_else(|| joint("missing \")\" after the origin key"))?;
    check_name(s, "origin key", origin_key)?;
    let rest = rest
        .strip_prefix('.')
        .ok_or_else(|| joint("missing \".\" after \"(ORIGIN_KEY)\""))?;
    let filter = parse_clause(rest, s)?;
    Ok(JointFilter {
        table: table.to_owned(),
        related_key: related_key.to_owned(),
        origin_key: origin_key.to_owned(),
        filter,
    })
}

impl FromStr for Filter {
    type Err = FilterError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_filter(s)
    }
}

impl FromStr for JointFilter {
    type Err = FilterError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_joint_filter(s)
    }
}

impl fmt::Display for Filter {
    /// Canonical syntax: `field.op('a','b')`, arguments single-quoted with
    /// `\` and `'` backslash-escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}(", self.field, self.op)?;
        for (i, arg) in self.args.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str("'")?;
            for c in arg.chars() {
                if c == '\'' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("'")?;
        }
        f.write_str(")")
    }
}

impl fmt::Display for JointFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}({}).{}",
            self.table, self.related_key, self.origin_key, self.filter
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> Filter {
        match parse_filter(s) {
            Ok(f) => f,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    fn e(s: &str) -> String {
        match parse_filter(s) {
            Ok(f) => panic!("{s}: expected an error, got {f:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn f(field: &str, op: FilterOp, args: &[&str]) -> Filter {
        Filter {
            field: field.to_owned(),
            op,
            args: args.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn examples() {
        use FilterOp::*;
        assert_eq!(p("name.equals('web')"), f("name", Equals, &["web"]));
        assert_eq!(
            p("status.in(running,ready)"),
            f("status", In, &["running", "ready"])
        );
        assert_eq!(p("name.in(\"a\",\"b\")"), f("name", In, &["a", "b"]));
        assert_eq!(
            p("created_at.between('2024-01-01','2024-02-01')"),
            f("created_at", Between, &["2024-01-01", "2024-02-01"])
        );
        assert_eq!(
            p("ip_addr.startswith(10.0.)"),
            f("ip_addr", StartsWith, &["10.0."])
        );
        assert_eq!(p("description.isnull()"), f("description", IsNull, &[]));
        assert_eq!(p("name.contains(db)"), f("name", Contains, &["db"]));
        assert_eq!(p("vcpu_count.ge(4)"), f("vcpu_count", Ge, &["4"]));
    }

    #[test]
    fn every_op() {
        for op in FilterOp::ALL {
            let args: &[&str] = match op.arity() {
                Arity::Exactly(0) => &[],
                Arity::Exactly(2) => &["1", "2"],
                _ => &["x"],
            };
            let text = format!("fld.{}({})", op.as_str(), args.join(","));
            assert_eq!(p(&text), f("fld", op, args), "{text}");
            let upper = format!("fld.{}({})", op.as_str().to_uppercase(), args.join(","));
            assert_eq!(p(&upper).op, op, "{upper}");
            assert_eq!(op.as_str().parse::<FilterOp>(), Ok(op));
        }
        assert_eq!(
            p("a.NotIn(x,y,z)"),
            f("a", FilterOp::NotIn, &["x", "y", "z"])
        );
        for name in ["gt", "le", "lt", "like", "endswith", "notequals"] {
            let op = FilterOp::from_name(name);
            assert!(op.is_some_and(|o| o.arity() == Arity::Exactly(1)), "{name}");
        }
        assert!("foo".parse::<FilterOp>().is_err());
    }

    #[test]
    fn zero_arg_ops_allow_whitespace() {
        assert_eq!(p("a.isnotempty( )"), f("a", FilterOp::IsNotEmpty, &[]));
        assert_eq!(
            p("  a.isNullOrEmpty(\t)  "),
            f("a", FilterOp::IsNullOrEmpty, &[])
        );
    }

    #[test]
    fn quoting_and_escaping() {
        use FilterOp::*;
        assert_eq!(p("name.equals('a,b(c)')"), f("name", Equals, &["a,b(c)"]));
        assert_eq!(p("name.equals(\"a,b)\")"), f("name", Equals, &["a,b)"]));
        assert_eq!(p(r"name.equals('it\'s')"), f("name", Equals, &["it's"]));
        assert_eq!(
            p(r#"name.equals("say \"hi\"")"#),
            f("name", Equals, &["say \"hi\""])
        );
        assert_eq!(p(r"name.equals('a\\b')"), f("name", Equals, &[r"a\b"]));
        assert_eq!(p(r"name.like('a\%b')"), f("name", Like, &[r"a\%b"]));
        assert_eq!(
            p("name.equals('he said \"x\"')"),
            f("name", Equals, &["he said \"x\""])
        );
        assert_eq!(
            p("name.equals(' padded ')"),
            f("name", Equals, &[" padded "])
        );
        assert_eq!(p("name.equals('')"), f("name", Equals, &[""]));
        assert_eq!(
            p("name.in( a , 'b' ,\"c\" )"),
            f("name", In, &["a", "b", "c"])
        );
        assert_eq!(p("name.equals(my vm)"), f("name", Equals, &["my vm"]));
        assert_eq!(p("name.equals(it's)"), f("name", Equals, &["it's"]));
        assert_eq!(p("name.equals(f(x))"), f("name", Equals, &["f(x)"]));
        assert_eq!(p("name.equals(中文)"), f("name", Equals, &["中文"]));
    }

    #[test]
    fn errors() {
        let cases = [
            (
                "name.foo(x)",
                "filter \"name.foo(x)\": unknown operator \"foo\"",
            ),
            (
                "a.between(1)",
                "filter \"a.between(1)\": between takes 2 arguments, got 1",
            ),
            (
                "a.between(1,2,3)",
                "filter \"a.between(1,2,3)\": between takes 2 arguments, got 3",
            ),
            (
                "a.in()",
                "filter \"a.in()\": in takes at least 1 argument, got 0",
            ),
            (
                "a.notin( )",
                "filter \"a.notin( )\": notin takes at least 1 argument, got 0",
            ),
            (
                "a.equals()",
                "filter \"a.equals()\": equals takes 1 argument, got 0",
            ),
            (
                "a.equals(x,y)",
                "filter \"a.equals(x,y)\": equals takes 1 argument, got 2",
            ),
            (
                "a.isnull(x)",
                "filter \"a.isnull(x)\": isnull takes no arguments, got 1",
            ),
            (
                "a.isempty('')",
                "filter \"a.isempty('')\": isempty takes no arguments, got 1",
            ),
            (
                "name",
                "filter \"name\": expected FIELD.OP(ARGS), missing \".\" after the field name",
            ),
            (
                "name.equals",
                "filter \"name.equals\": expected FIELD.OP(ARGS), missing \"(\" after the operator",
            ),
            (
                "name.equals(x",
                "filter \"name.equals(x\": expected FIELD.OP(ARGS), missing closing \")\" at the end",
            ),
            (
                "1name.equals(x)",
                "filter \"1name.equals(x)\": invalid field name \"1name\"",
            ),
            ("na-me.equals(x)", "invalid field name \"na-me\""),
            (".equals(x)", "invalid field name \"\""),
            ("a.b.equals(x)", "unknown operator \"b.equals\""),
            ("a.(x)", "unknown operator \"\""),
            (
                "a.equals('x)",
                "filter \"a.equals('x)\": unterminated quoted argument 1",
            ),
            ("a.in(x,\"y)", "unterminated quoted argument 2"),
            (r"a.equals('x\')", "unterminated quoted argument 1"),
            (
                "a.equals('x'y)",
                "filter \"a.equals('x'y)\": unexpected 'y' after quoted argument 1",
            ),
            ("a.in('x') ('y')", "unexpected ')' after quoted argument 1"),
            (
                "a.in(x,,y)",
                "filter \"a.in(x,,y)\": argument 2 is empty (quote it to pass an empty string)",
            ),
            ("a.in(x,)", "argument 2 is empty"),
            ("a.in(,x)", "argument 1 is empty"),
            ("a.in(x, )", "argument 2 is empty"),
            ("a.in('x',)", "argument 2 is empty"),
        ];
        for (input, want) in cases {
            let got = e(input);
            assert!(got.contains(want), "{input}: got {got:?}, want {want:?}");
        }
        let long_field = "a".repeat(65);
        assert!(e(&format!("{long_field}.equals(x)")).contains("invalid field name"));
        assert_eq!(p(&format!("{}.equals(x)", "a".repeat(64))).field.len(), 64);
    }

    #[test]
    fn too_long() {
        let s = format!("a.equals({})", "x".repeat(MAX_FILTER_LEN));
        let err = e(&s);
        assert!(
            err.contains("too long (4106 bytes, at most 4096 allowed)"),
            "{err}"
        );
        assert!(err.len() < 400, "{err}");
        let ok = format!("a.equals({})", "x".repeat(MAX_FILTER_LEN - 10));
        assert_eq!(p(&ok).args[0].len(), MAX_FILTER_LEN - 10);
        // Clipping respects char boundaries.
        let s = format!("a.equals({})", "中".repeat(2000));
        assert!(e(&s).contains("..."));
        assert!(parse_joint_filter(&s).is_err());
    }

    #[test]
    fn display_is_canonical() {
        let x = f("name", FilterOp::In, &["a", "it's", r"back\slash", ""]);
        assert_eq!(x.to_string(), r"name.in('a','it\'s','back\\slash','')");
        assert_eq!(p(&x.to_string()), x);
        assert_eq!(f("d", FilterOp::IsNull, &[]).to_string(), "d.isnull()");
        assert_eq!(
            p("A_1.STARTSWITH(10.0.)").to_string(),
            "A_1.startswith('10.0.')"
        );
    }

    #[test]
    fn joint_filters() {
        let j = parse_joint_filter("guestnetworks.guest_id(id).ip_addr.equals('10.0.0.1')");
        assert_eq!(
            j,
            Ok(JointFilter {
                table: "guestnetworks".into(),
                related_key: "guest_id".into(),
                origin_key: "id".into(),
                filter: f("ip_addr", FilterOp::Equals, &["10.0.0.1"]),
            })
        );
        let j2 = parse_joint_filter("networks.id(network_id).name.contains(wp)");
        assert_eq!(
            j2.as_ref().map(|j| (
                j.table.as_str(),
                j.related_key.as_str(),
                j.origin_key.as_str()
            )),
            Ok(("networks", "id", "network_id"))
        );
        if let Ok(j) = j2 {
            assert_eq!(j.to_string(), "networks.id(network_id).name.contains('wp')");
            assert_eq!(parse_joint_filter(&j.to_string()), Ok(j));
        }
        let errs = [
            ("guestnetworks", "missing \".\" after the table name"),
            (
                "guestnetworks.guest_id",
                "missing \"(\" after the related key",
            ),
            (
                "guestnetworks.guest_id(id",
                "missing \")\" after the origin key",
            ),
            (
                "guestnetworks.guest_id(id)ip_addr.equals(x)",
                "missing \".\" after \"(ORIGIN_KEY)\"",
            ),
            (
                "1g.guest_id(id).ip_addr.equals(x)",
                "invalid table name \"1g\"",
            ),
            (
                "g.gu-est(id).ip_addr.equals(x)",
                "invalid related key \"gu-est\"",
            ),
            ("g.guest_id().ip_addr.equals(x)", "invalid origin key \"\""),
            (
                "g.guest_id(id).ip_addr.foo(x)",
                "filter \"g.guest_id(id).ip_addr.foo(x)\": unknown operator \"foo\"",
            ),
            (
                "g.guest_id(id).ip_addr.between(x)",
                "between takes 2 arguments, got 1",
            ),
        ];
        for (input, want) in errs {
            match parse_joint_filter(input) {
                Ok(j) => panic!("{input}: expected error, got {j:?}"),
                Err(err) => {
                    let msg = err.to_string();
                    assert!(msg.contains(want), "{input}: got {msg:?}, want {want:?}");
                    assert!(msg.starts_with(&format!("filter {input:?}: ")), "{msg}");
                }
            }
        }
    }

    fn op_strategy() -> impl Strategy<Value = FilterOp> {
        prop::sample::select(FilterOp::ALL.to_vec())
    }

    fn filter_strategy(arg: &'static str) -> impl Strategy<Value = Filter> {
        (
            "[A-Za-z_][A-Za-z0-9_]{0,20}",
            op_strategy(),
            prop::collection::vec(arg, 0..5),
        )
            .prop_map(|(field, op, mut args)| {
                match op.arity() {
                    Arity::Exactly(k) => args.resize(k, "v".to_owned()),
                    Arity::AtLeast(k) => {
                        if args.len() < k {
                            args.resize(k, "v".to_owned());
                        }
                    }
                }
                Filter { field, op, args }
            })
    }

    proptest! {
        #[test]
        fn never_panics(s in any::<String>()) {
            let _ = parse_filter(&s);
            let _ = parse_joint_filter(&s);
        }

        #[test]
        fn never_panics_structured(s in "[a-z_]{0,4}[.]?[a-zA-Z]{0,8}[(]?[a-z '\",()\\\\.中]{0,20}[)]?") {
            let _ = parse_filter(&s);
            let _ = parse_joint_filter(&format!("t.k(o).{s}"));
        }

        #[test]
        fn round_trip(filter in filter_strategy("[^'\"\\\\]{0,12}")) {
            let text = filter.to_string();
            prop_assert_eq!(parse_filter(&text), Ok(filter), "text: {}", text);
        }

        #[test]
        fn round_trip_any_args(filter in filter_strategy("\\PC{0,12}")) {
            let text = filter.to_string();
            prop_assert_eq!(parse_filter(&text), Ok(filter), "text: {}", text);
        }

        #[test]
        fn joint_round_trip(filter in filter_strategy("[^'\"\\\\]{0,12}"), table in "[a-z_]{1,10}") {
            let j = JointFilter { table, related_key: "guest_id".into(), origin_key: "id".into(), filter };
            let text = j.to_string();
            prop_assert_eq!(parse_joint_filter(&text), Ok(j), "text: {}", text);
        }
    }
}

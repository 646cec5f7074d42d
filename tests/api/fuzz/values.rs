//! Odd values: text, numbers and JSON that no field takes, shared by every route's bodies,
//! paths and filenames.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::Union;

use super::json_string;

/// Odd Unicode and injection-looking text.
pub(super) const ODD_TEXT: &[&str] = &[
    "\0",
    "a\0b",
    "\u{202e}gnp.exe",
    "\u{200f}rtl\u{200e}",
    "\u{61c}\u{2066}\u{2069}",
    "😀🚀👩\u{200d}👩\u{200d}👧",
    "e\u{301}\u{302}\u{303}\u{304}\u{305}",
    "Z\u{36f}\u{36e}\u{36d}a\u{35d}l\u{35e}g\u{35f}o",
    "\u{feff}bom",
    "\u{200b}",
    "\u{fffd}",
    "\u{fffe}\u{ffff}",
    "\u{10ffff}",
    "ｆｕｌｌｗｉｄｔｈ",
    "\u{2028}\u{2029}",
    "\r\n",
    "\t",
    "\u{7f}",
    "\u{85}",
    " ",
    "",
    "%00",
    "%2e%2e%2f",
    "' OR '1'='1",
    "<script>alert(1)</script>",
    "${jndi:ldap://x}",
    "{{7*7}}",
    "%s%s%n",
    "\\",
    "null",
];

/// Filenames that try to leave their directory, literally or encoded.
pub(super) const TRAVERSALS: &[&str] = &[
    "../../etc/passwd",
    "..\\..\\x",
    "/abs",
    "a/../../b",
    "%2e%2e%2f",
    "%2e%2e%2fetc%2fpasswd",
    "%2E%2E%2F%2E%2E%2F",
    "..",
    ".",
    "...",
    "....//",
    "..%2f",
    "%252e%252e%252f",
    "\u{2025}",
    "\u{ff0e}\u{ff0e}\u{ff0f}",
    "file.txt\0.png",
    "C:\\Windows\\win.ini",
    "~/.ssh/id_rsa",
    " ..",
    ".. ",
    "a..b",
    ".hidden",
    "CON",
    "name%00.png",
    "a/b",
    "\\\\server\\share",
    "..%c0%af",
    "%c0%ae%c0%ae/",
    "..;/",
    "/",
    "\\",
    "./a",
    "a/.",
    "a%2Fb",
    "%2F",
    "..%5c..%5c",
    "%2e",
    ".%2e",
    "%2e%2e",
];

/// Numbers at and past every limit, as JSON text (some of it is not JSON).
const ODD_NUMBERS: &[&str] = &[
    "0",
    "-1",
    "-0",
    "-0.0",
    "0.0",
    "1.5",
    "1e2",
    "1E400",
    "1e308",
    "-1e308",
    "1e309",
    "-1e309",
    "2147483648",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999999999999999",
    "0.1e-400",
    "4.9e-324",
    "101",
    "86401",
    "59",
    "NaN",
    "-NaN",
    "Infinity",
    "-Infinity",
    "+1",
    "01",
    "-01",
    ".5",
    "5.",
    "0x10",
    "1_000",
    "--1",
];

/// JSON values of every type, and texts that look like JSON but are not.
const ODD_JSON: &[&str] = &[
    "true",
    "false",
    "null",
    "[]",
    "{}",
    "[null]",
    "[\"a\",1]",
    "{\"a\":{\"b\":[1,{}]}}",
    "\"\"",
    "\" \"",
    "\"\\u0000\"",
    "\"a\\u0000b\"",
    "\"\\uD83D\\uDE00\"",
    "\"\\u202e\"",
    "\"\\ufeff\"",
    "\"\\uffff\"",
    "\"\\/\"",
    "\"\\\\\"",
    "\"NaN\"",
    "\"Infinity\"",
    "\"-0\"",
    "\"1e308\"",
    "\"9223372036854775808\"",
    "\"true\"",
    "\"null\"",
    "\"\\ud800\"",
    "\"\\udfff\"",
    "\"\\ud800\\ud800\"",
    "\"\\udc00\\ud800\"",
    "\"a\\ud800b\"",
    "\"\\uDBFF\"",
    "\"\\u12\"",
    "\"bad \\x41 escape\"",
    "\"raw\ttab\"",
    "\"raw\u{1}control\"",
    "\"unterminated",
    "undefined",
    "True",
    "None",
    "'single'",
    "[1,]",
    "{\"a\":1,}",
];

/// Bodies that are not JSON objects at all.
pub(super) const MALFORMED: &[&str] = &[
    "{",
    "}",
    "{\"a\":}",
    "{\"a\" 1}",
    "[",
    "nul",
    "{'a':1}",
    "{a:1}",
    "\u{feff}{}",
    "{}garbage",
    "{}{}",
    "{\"a\":1}{\"b\":2}",
    "\0",
    "\0{}",
    "{\"\\ud800\":1}",
    "{\"k\":\"\\ud800\"}",
    "{\"k\":\"\\udc00\"}",
    "{\"k\":\"\u{1}\"}",
    "{\"k\":NaN}",
    "{\"k\":1e999}",
    "[]",
    "null",
    "\"just a string\"",
    "1",
    "-0",
    "true",
    "[{}]",
    "<xml/>",
    "a=1&b=2",
    "--boundary\r\nContent-Disposition: form-data\r\n\r\nx\r\n--boundary--",
];

/// Object keys no route accepts.
pub(super) const ODD_KEYS: &[&str] = &[
    "bogus",
    "",
    " ",
    "\\u0000",
    "filename ",
    "FILENAME",
    "__proto__",
    "constructor",
    "\\ud83d\\ude00",
    "\\u202ekey",
    "limit\\u0000",
    "a.b",
    "$where",
];

pub(super) fn deep_nesting() -> BoxedStrategy<String> {
    select(vec![16usize, 127, 128, 129, 300, 5000])
        .prop_flat_map(|depth| {
            prop_oneof![
                Just(format!("{}{}", "[".repeat(depth), "]".repeat(depth))),
                Just(format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))),
            ]
        })
        .boxed()
}

fn long_string() -> BoxedStrategy<String> {
    (
        select(vec![256usize, 1024, 1025, 4096, 20_000]),
        select(vec![
            "x", "é", "😀", "\u{301}", "a\u{301}", "\u{202e}", "\0", "\\",
        ]),
    )
        .prop_map(|(n, unit)| json_string(&unit.repeat(n)))
        .boxed()
}

pub(super) fn arbitrary_text() -> BoxedStrategy<String> {
    vec(any::<char>(), 0..40)
        .prop_map(|chars| chars.into_iter().collect::<String>())
        .boxed()
}

/// Values holding NUL, as text, as a key, and nested.
pub(super) const NUL_JSON: &[&str] = &[
    "\"\\u0000\"",
    "\"a\\u0000b\"",
    "\"x\\u0000\"",
    "[\"\\u0000\"]",
    "{\"k\":\"\\u0000\"}",
    "{\"\\u0000\":1}",
    "{\"k\":[{\"j\":\"\\u0000\"}]}",
];

/// A JSON text (or not quite) where a value belongs.
pub(super) fn odd_literal() -> BoxedStrategy<String> {
    Union::new_weighted(vec![
        (3, select(NUL_JSON).prop_map(str::to_owned).boxed()),
        (4, select(ODD_NUMBERS).prop_map(str::to_owned).boxed()),
        (4, select(ODD_JSON).prop_map(str::to_owned).boxed()),
        (3, select(ODD_TEXT).prop_map(json_string).boxed()),
        (2, select(TRAVERSALS).prop_map(json_string).boxed()),
        (2, long_string()),
        (1, deep_nesting()),
        (2, arbitrary_text().prop_map(|s| json_string(&s)).boxed()),
        (1, any::<i64>().prop_map(|n| n.to_string()).boxed()),
        (1, any::<u64>().prop_map(|n| n.to_string()).boxed()),
        (1, any::<f64>().prop_map(|f| f.to_string()).boxed()),
        (1, any::<f64>().prop_map(|f| format!("{f:?}")).boxed()),
    ])
    .boxed()
}

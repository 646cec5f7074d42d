use std::fmt;

/// Why a value from a client was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidValue(pub String);

impl fmt::Display for InvalidValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn invalid<T>(message: impl Into<String>) -> Result<T, InvalidValue> {
    Err(InvalidValue(message.into()))
}

/// A filename safe to put in an S3 key: 1..255 characters, no separators, `..` or controls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filename(String);

impl Filename {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let chars = s.chars().count();
        if chars == 0 || chars > 255 {
            return invalid("filename must be 1 to 255 characters");
        }
        if s.contains('/') || s.contains('\\') {
            return invalid("filename must not contain '/' or '\\'");
        }
        if s.contains("..") {
            return invalid("filename must not contain '..'");
        }
        if s.chars().any(char::is_control) {
            return invalid("filename must not contain control characters");
        }
        Ok(Filename(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name without its last extension, as a blob property candidate.
    pub fn stem(&self) -> &str {
        match self.0.rfind('.') {
            Some(i) if i > 0 => &self.0[..i],
            _ => &self.0,
        }
    }
}

/// The longest object key S3 accepts, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1024;

/// Where confirmed bytes are kept. Every key a presigned URL names starts with its
/// namespace id (`ns_...`), so no URL can write under this prefix.
const CONFIRMED_PREFIX: &str = "confirmed/";

/// The two object keys of an upload: `staging`, which its presigned URL PUTs to (and a
/// client may overwrite while the URL lives), and `confirmed`, the copy a confirmation
/// verified and recorded, which no URL can write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadKeys {
    pub staging: String,
    pub confirmed: String,
}

impl UploadKeys {
    /// Where confirmed objects (and multipart uploads, which become them) are kept.
    pub const CONFIRMED_PREFIX: &'static str = CONFIRMED_PREFIX;

    /// The keys of a new upload, `{namespace}/{bucket}/{upload}/{filename}` and its
    /// confirmed twin; refused when the longer of them would pass S3's key limit, which
    /// counts bytes, so that a name of many multi-byte characters can be too long.
    pub fn new(
        namespace_id: &str,
        bucket_id: &str,
        upload_id: &str,
        filename: &Filename,
    ) -> Result<Self, InvalidValue> {
        let keys = UploadKeys::of(&format!(
            "{namespace_id}/{bucket_id}/{upload_id}/{}",
            filename.as_str()
        ));
        let longest = keys.confirmed.len();
        if longest > MAX_KEY_BYTES {
            return invalid(format!(
                "filename is too long: its object key would be {longest} bytes of UTF-8, over \
                 S3's limit of {MAX_KEY_BYTES}; this name may have at most {} bytes",
                filename.as_str().len() - (longest - MAX_KEY_BYTES)
            ));
        }
        Ok(keys)
    }

    /// The keys of an upload from the key it records, whichever of the two that is: the
    /// staging key until it completes, the confirmed key from then on.
    pub fn of(s3_key: &str) -> Self {
        match s3_key.strip_prefix(CONFIRMED_PREFIX) {
            Some(staging) => UploadKeys {
                staging: staging.to_owned(),
                confirmed: s3_key.to_owned(),
            },
            None => UploadKeys {
                staging: s3_key.to_owned(),
                confirmed: format!("{CONFIRMED_PREFIX}{s3_key}"),
            },
        }
    }
}

/// A MIME type `type/subtype`, lower-cased, as signed into the presigned URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType(String);

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 127
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
}

impl ContentType {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        match s.split_once('/') {
            Some((kind, sub)) if is_token(kind) && is_token(sub) => {
                Ok(ContentType(s.to_ascii_lowercase()))
            }
            _ => invalid("content_type must be a MIME type such as 'image/png'"),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The kind of a blob: one of the SDK's `BucketSchemaFieldType` values, in lower case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobType(&'static str);

impl BlobType {
    /// Every value a client may name, as the SDK's enum lists them.
    pub const ALL: [&'static str; 15] = [
        "string", "number", "integer", "float", "boolean", "object", "array", "date", "datetime",
        "text", "image", "audio", "video", "pdf", "excel",
    ];

    /// Case-insensitive, so `IMAGE` (the docs' spelling) is `image`.
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        Self::ALL
            .iter()
            .find(|t| t.eq_ignore_ascii_case(s))
            .map(|t| BlobType(t))
            .ok_or_else(|| {
                InvalidValue(format!(
                    "'{s}' is not a blob type; one of: {}",
                    Self::ALL.join(", ")
                ))
            })
    }

    pub fn as_str(&self) -> &'static str {
        self.0
    }
}

/// The blob type a content type implies when the client names none.
pub fn blob_type_for(content_type: &ContentType) -> BlobType {
    let ct = content_type.as_str();
    let kind = if ct.starts_with("video/") {
        "video"
    } else if ct.starts_with("image/") {
        "image"
    } else if ct.starts_with("audio/") {
        "audio"
    } else if ct.starts_with("text/") {
        "text"
    } else if ct == "application/pdf" {
        "pdf"
    } else if ct == "application/vnd.ms-excel"
        || ct == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    {
        "excel"
    } else {
        "string"
    };
    BlobType(kind)
}

/// A blob property name: `^[A-Za-z0-9_]+$`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobProperty(String);

impl BlobProperty {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let ok = !s.is_empty()
            && s.len() <= 255
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if ok {
            Ok(BlobProperty(s.to_owned()))
        } else {
            invalid("blob_property must match ^[A-Za-z0-9_]+$")
        }
    }

    /// A property derived from a filename stem: unfit characters become `_`.
    pub fn from_stem(stem: &str) -> Self {
        let cleaned: String = stem
            .chars()
            .take(255)
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        if cleaned.is_empty() {
            BlobProperty("file".to_owned())
        } else {
            BlobProperty(cleaned)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A SHA-256 content hash: 64 lower-case hex characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContentHash(String);

impl ContentHash {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let ok = s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if ok {
            Ok(ContentHash(s.to_owned()))
        } else {
            invalid("file_hash must be 64 lower-case hex characters (SHA-256)")
        }
    }

    /// The hash standing in for content under the `etag` policy, where no bytes are read.
    pub fn from_etag(etag: &str) -> Self {
        use sha2::{Digest, Sha256};
        ContentHash(hex::encode(Sha256::digest(
            format!("etag:{}", unquote_etag(etag).to_ascii_lowercase()).as_bytes(),
        )))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digest in base64, as S3's `x-amz-checksum-sha256` carries it.
    pub fn to_base64(&self) -> String {
        use base64::Engine;
        let bytes = hex::decode(&self.0).unwrap_or_default();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }
}

/// An ETag without the double quotes HTTP puts around it.
pub fn unquote_etag(etag: &str) -> &str {
    let t = etag.trim();
    let t = t.strip_prefix("W/").unwrap_or(t);
    t.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(t)
}

/// ETags compare without quotes and without regard to case.
pub fn etags_match(given: &str, actual: &str) -> bool {
    unquote_etag(given).eq_ignore_ascii_case(unquote_etag(actual))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames() {
        let table = [
            ("a.txt", true),
            ("photo 1.JPG", true),
            ("résumé.pdf", true),
            ("", false),
            ("a/b", false),
            ("a\\b", false),
            ("..", false),
            ("x..y", false),
            ("bad\nname", false),
            ("nul\0", false),
        ];
        for (name, ok) in table {
            assert_eq!(Filename::parse(name).is_ok(), ok, "{name:?}");
        }
        assert!(Filename::parse(&"x".repeat(255)).is_ok());
        assert!(Filename::parse(&"x".repeat(256)).is_err());
        assert!(Filename::parse(&"é".repeat(255)).is_ok());
    }

    #[test]
    fn upload_keys() {
        let (ns, bkt, upl) = (
            format!("ns_{}", "a".repeat(32)),
            format!("bkt_{}", "b".repeat(32)),
            format!("upl_{}", "c".repeat(32)),
        );
        let name = Filename::parse("a.txt").unwrap();
        let keys = UploadKeys::new(&ns, &bkt, &upl, &name).unwrap();
        assert_eq!(keys.staging, format!("{ns}/{bkt}/{upl}/a.txt"));
        assert_eq!(keys.confirmed, format!("confirmed/{ns}/{bkt}/{upl}/a.txt"));
        // Either key gives back both; no staging key is a confirmed one.
        assert_eq!(UploadKeys::of(&keys.staging), keys);
        assert_eq!(UploadKeys::of(&keys.confirmed), keys);
        assert!(!keys.staging.starts_with(CONFIRMED_PREFIX));

        // S3 counts bytes: the budget left for the name by the prefix parts.
        let budget = MAX_KEY_BYTES - keys.confirmed.len() + "a.txt".len();
        for (name, ok) in [
            ("x".repeat(255), true),
            ("é".repeat(255), true),
            ("😀".repeat(budget / 4), true),
            ("😀".repeat(budget / 4 + 1), false),
            ("😀".repeat(255), false),
        ] {
            let name = Filename::parse(&name).unwrap();
            let made = UploadKeys::new(&ns, &bkt, &upl, &name);
            assert_eq!(made.is_ok(), ok, "{} bytes", name.as_str().len());
            if let Ok(keys) = made {
                assert!(keys.confirmed.len() <= MAX_KEY_BYTES);
            }
        }
        let err = UploadKeys::new(
            &ns,
            &bkt,
            &upl,
            &Filename::parse(&"😀".repeat(255)).unwrap(),
        )
        .unwrap_err();
        assert!(err.0.contains(&format!("at most {budget} bytes")), "{err}");
    }

    #[test]
    fn stems() {
        let table = [
            ("a.txt", "a"),
            ("a.b.c", "a.b"),
            (".hidden", ".hidden"),
            ("x", "x"),
        ];
        for (name, stem) in table {
            assert_eq!(Filename::parse(name).unwrap().stem(), stem);
        }
        assert_eq!(BlobProperty::from_stem("my photo-1").as_str(), "my_photo_1");
        assert_eq!(BlobProperty::from_stem("").as_str(), "file");
    }

    #[test]
    fn content_types_and_blob_types() {
        let table = [
            ("video/mp4", Some("video")),
            ("image/PNG", Some("image")),
            ("audio/mpeg", Some("audio")),
            ("text/plain", Some("text")),
            ("application/pdf", Some("pdf")),
            ("application/vnd.ms-excel", Some("excel")),
            ("application/zip", Some("string")),
            ("nope", None),
            ("a/", None),
            ("/b", None),
            ("text/plain; charset=utf-8", None),
            ("te xt/plain", None),
        ];
        for (ct, want) in table {
            let parsed = ContentType::parse(ct);
            assert_eq!(
                parsed.as_ref().ok().map(|c| blob_type_for(c).as_str()),
                want,
                "{ct}"
            );
        }
    }

    #[test]
    fn hashes_in_base64() {
        // SHA-256 of the empty string.
        let empty =
            ContentHash::parse("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
                .unwrap();
        assert_eq!(
            empty.to_base64(),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }

    #[test]
    fn hashes() {
        let ok = "a".repeat(64);
        assert!(ContentHash::parse(&ok).is_ok());
        assert!(ContentHash::parse(&"A".repeat(64)).is_err());
        assert!(ContentHash::parse(&"a".repeat(63)).is_err());
        assert!(ContentHash::parse(&"g".repeat(64)).is_err());
        let e = ContentHash::from_etag("\"ABC\"");
        assert_eq!(e, ContentHash::from_etag("abc"));
        assert!(ContentHash::parse(e.as_str()).is_ok());
    }

    #[test]
    fn etags() {
        let table = [
            ("abc", "abc", true),
            ("\"abc\"", "abc", true),
            ("ABC", "\"abc\"", true),
            ("W/\"abc\"", "abc", true),
            ("abd", "abc", false),
            ("\"abc", "abc", false),
        ];
        for (given, actual, want) in table {
            assert_eq!(etags_match(given, actual), want, "{given} {actual}");
        }
        assert_eq!(unquote_etag("\"x-2\""), "x-2");
    }

    #[test]
    fn blob_properties_and_types() {
        assert!(BlobProperty::parse("content_1").is_ok());
        assert!(BlobProperty::parse("bad-name").is_err());
        assert!(BlobProperty::parse("").is_err());
        assert_eq!(BlobType::parse("IMAGE").unwrap().as_str(), "image");
        assert_eq!(BlobType::parse("pdf").unwrap().as_str(), "pdf");
        assert!(BlobType::parse("DOCUMENT").is_err());
        assert!(BlobType::parse("").is_err());
    }
}

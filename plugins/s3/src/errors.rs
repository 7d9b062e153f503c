//! From object_store's errors to the origin's: a kind the host acts on, and for
//! health, the short reason a person reads in `musicfs status`.

use origin_api::{ErrorKind, OriginError};

/// What an S3 failure means.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Cause {
    AccessDenied,
    NoSuchBucket,
    NotFound,
    Unreachable,
    Timeout,
    Other,
}

pub(crate) fn cause(err: &object_store::Error) -> Cause {
    // Only the message: the Debug form also prints client settings.
    let text = err.to_string();
    let has = |s: &str| text.contains(s);
    match err {
        _ if has("NoSuchBucket") => Cause::NoSuchBucket,
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => Cause::AccessDenied,
        _ if has("SignatureDoesNotMatch")
            || has("InvalidAccessKeyId")
            || has("AccessDenied")
            || has("403 Forbidden") =>
        {
            Cause::AccessDenied
        }
        object_store::Error::NotFound { .. } => Cause::NotFound,
        // reqwest says "error sending request" for refused connections and for
        // requests that ran out of time alike.
        _ if has("error sending request") || has("onnection refused") || has("dns error") => {
            Cause::Unreachable
        }
        _ if has("timed out") => Cause::Timeout,
        _ => Cause::Other,
    }
}

/// The origin error for an object_store error.
pub(crate) fn origin_error(err: object_store::Error) -> OriginError {
    let kind = match cause(&err) {
        Cause::AccessDenied => ErrorKind::PermissionDenied,
        Cause::NoSuchBucket | Cause::Unreachable => ErrorKind::Unavailable,
        Cause::NotFound => ErrorKind::NotFound,
        Cause::Timeout => ErrorKind::Timeout,
        Cause::Other => ErrorKind::Other,
    };
    OriginError::new(kind, one_line(&err.to_string()))
}

/// The reason an unhealthy origin gives.
pub(crate) fn health_reason(err: &object_store::Error) -> String {
    match cause(err) {
        Cause::AccessDenied => "access denied".into(),
        Cause::NoSuchBucket => "no such bucket".into(),
        Cause::Unreachable => "unreachable".into(),
        Cause::Timeout => "unreachable (timed out)".into(),
        Cause::NotFound | Cause::Other => one_line(&err.to_string()),
    }
}

/// Whether a GET failed because its range starts at or past the end (HTTP 416).
/// The message names the request's URL, whose port may hold "416" too, so
/// only the status line and the S3 error code count.
pub(crate) fn is_range_past_end(err: &object_store::Error) -> bool {
    let text = err.to_string();
    text.contains("416 Range Not Satisfiable") || text.contains("<Code>InvalidRange</Code>")
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(message: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: Box::new(std::io::Error::other(message.to_owned())),
        }
    }

    #[test]
    fn a_port_with_416_in_it_is_not_a_range_past_the_end() {
        // Regression: a folder read on a server at port 41633 came back empty.
        let other = generic(
            "Error performing GET http://127.0.0.1:41633/bucket/library/Artist in 2ms - \
             Server returned non-2xx status code: 500 Internal Server Error: ",
        );
        assert!(!is_range_past_end(&other));
        let past = generic(
            "Error performing GET http://127.0.0.1:9000/bucket/k in 2ms - \
             Server returned non-2xx status code: 416 Range Not Satisfiable: ",
        );
        assert!(is_range_past_end(&past));
    }
}

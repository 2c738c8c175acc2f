//! The bearer token of a request, read before anything about it is
//! trusted.

/// Why a request carries no token to verify.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no bearer token (Authorization: Bearer <JWT>)")]
    Missing,
    #[error("the Authorization header is not a bearer token")]
    NotBearer,
}

/// The token of an `Authorization` header value.
pub fn bearer(header: Option<&[u8]>) -> Result<&str, TokenError> {
    let value = header.ok_or(TokenError::Missing)?;
    let value = std::str::from_utf8(value).map_err(|_| TokenError::NotBearer)?;
    let (scheme, token) = value.trim().split_once(' ').ok_or(TokenError::NotBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(TokenError::NotBearer);
    }
    Ok(token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_and_what_is_not_one() {
        assert_eq!(bearer(Some(b"Bearer abc.def.ghi")), Ok("abc.def.ghi"));
        assert_eq!(bearer(Some(b"bearer  abc ")), Ok("abc"));
        assert_eq!(bearer(None), Err(TokenError::Missing));
        assert_eq!(
            bearer(Some(b"Basic dXNlcjpwYXNz")),
            Err(TokenError::NotBearer)
        );
        assert_eq!(bearer(Some(b"Bearer ")), Err(TokenError::NotBearer));
        assert_eq!(bearer(Some(b"\xff")), Err(TokenError::NotBearer));
    }
}

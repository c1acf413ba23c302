//! The etcd key layout of DESIGN.md, under a configurable prefix.

use super::error::StoreError;

/// A per-record section of the layout: `<prefix>/<section>/<Kind>/<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Desired,
    Status,
}

impl Section {
    fn as_str(self) -> &'static str {
        match self {
            Self::Desired => "desired",
            Self::Status => "status",
        }
    }
}

/// Builds and parses the keys under one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

/// Rejects parts that would change the shape of a key when joined with '/'.
pub(crate) fn check_part(part: &str) -> Result<&str, StoreError> {
    if part.is_empty() || part.contains('/') {
        return Err(StoreError::InvalidKey {
            part: part.to_owned(),
        });
    }
    Ok(part)
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.trim_end_matches('/').to_owned(),
        }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(crate) fn record(
        &self,
        section: Section,
        kind: &str,
        name: &str,
    ) -> Result<String, StoreError> {
        Ok(format!(
            "{}/{}/{}/{}",
            self.prefix,
            section.as_str(),
            check_part(kind)?,
            check_part(name)?
        ))
    }

    /// `<prefix>/<section>/` or `<prefix>/<section>/<Kind>/`; the trailing
    /// slash keeps `Stack` from matching `Stacks`.
    pub(crate) fn section_prefix(
        &self,
        section: Section,
        kind: Option<&str>,
    ) -> Result<String, StoreError> {
        Ok(match kind {
            None => format!("{}/{}/", self.prefix, section.as_str()),
            Some(kind) => format!(
                "{}/{}/{}/",
                self.prefix,
                section.as_str(),
                check_part(kind)?
            ),
        })
    }

    /// `(kind, name)` of a record key of `section`; `None` for keys of another shape.
    pub(crate) fn parse_record(&self, section: Section, key: &str) -> Option<(String, String)> {
        let rest = key
            .strip_prefix(&self.prefix)?
            .strip_prefix('/')?
            .strip_prefix(section.as_str())?
            .strip_prefix('/')?;
        let (kind, name) = rest.split_once('/')?;
        (!kind.is_empty() && !name.is_empty() && !name.contains('/'))
            .then(|| (kind.to_owned(), name.to_owned()))
    }

    pub(crate) fn event(&self, kind: &str, name: &str, id: &str) -> Result<String, StoreError> {
        Ok(format!(
            "{}/events/{}/{}/{}",
            self.prefix,
            check_part(kind)?,
            check_part(name)?,
            check_part(id)?
        ))
    }

    pub(crate) fn events_prefix(&self, filter: Option<(&str, &str)>) -> Result<String, StoreError> {
        Ok(match filter {
            None => format!("{}/events/", self.prefix),
            Some((kind, name)) => format!(
                "{}/events/{}/{}/",
                self.prefix,
                check_part(kind)?,
                check_part(name)?
            ),
        })
    }

    /// `(kind, name)` of an event key.
    pub(crate) fn parse_event(&self, key: &str) -> Option<(String, String)> {
        let rest = key.strip_prefix(&self.prefix)?.strip_prefix("/events/")?;
        let mut parts = rest.split('/');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(kind), Some(name), Some(id), None)
                if !kind.is_empty() && !name.is_empty() && !id.is_empty() =>
            {
                Some((kind.to_owned(), name.to_owned()))
            }
            _ => None,
        }
    }

    pub(crate) fn secret(&self, name: &str) -> Result<String, StoreError> {
        Ok(format!("{}/secrets/{}", self.prefix, check_part(name)?))
    }

    pub(crate) fn source(&self, name: &str) -> Result<String, StoreError> {
        Ok(format!("{}/sources/{}", self.prefix, check_part(name)?))
    }

    pub(crate) fn sources_prefix(&self) -> String {
        format!("{}/sources/", self.prefix)
    }

    pub(crate) fn leader(&self) -> String {
        format!("{}/leader", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_keys_round_trip() {
        let keys = Keys::new("/swarmkeeper/");
        let key = keys.record(Section::Desired, "Stack", "kittenapi").unwrap();
        assert_eq!(key, "/swarmkeeper/desired/Stack/kittenapi");
        assert_eq!(
            keys.parse_record(Section::Desired, &key),
            Some(("Stack".into(), "kittenapi".into()))
        );
        assert_eq!(keys.parse_record(Section::Status, &key), None);
    }

    #[test]
    fn malformed_keys_do_not_parse() {
        let keys = Keys::new("/p");
        assert_eq!(
            keys.parse_record(Section::Desired, "/p/desired/Stack"),
            None
        );
        assert_eq!(
            keys.parse_record(Section::Desired, "/p/desired/Stack/a/b"),
            None
        );
        assert_eq!(
            keys.parse_record(Section::Desired, "/px/desired/Stack/a"),
            None
        );
        assert_eq!(keys.parse_event("/p/events/Stack/a"), None);
    }

    #[test]
    fn parts_with_slashes_are_rejected() {
        let keys = Keys::new("/p");
        assert!(keys.record(Section::Desired, "Stack", "a/b").is_err());
        assert!(keys.record(Section::Desired, "", "a").is_err());
        assert!(keys.secret("../x").is_err());
    }

    #[test]
    fn event_keys_parse_and_kind_prefix_has_a_trailing_slash() {
        let keys = Keys::new("/p");
        let key = keys.event("Stack", "web", "000123-ab").unwrap();
        assert_eq!(keys.parse_event(&key), Some(("Stack".into(), "web".into())));
        assert_eq!(
            keys.section_prefix(Section::Desired, Some("Stack"))
                .unwrap(),
            "/p/desired/Stack/"
        );
        assert_eq!(keys.leader(), "/p/leader");
    }
}

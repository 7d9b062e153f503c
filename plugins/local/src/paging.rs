//! The local folder's entries for `origin_api::paging`: a name and whether the
//! folder's own listing says it is a folder (readdir's d_type: known even when
//! the entry cannot be stat'ed, as a dead network mount cannot).

use origin_api::paging::Named;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Name {
    pub(crate) text: String,
    pub(crate) is_dir: bool,
}

impl Named for Name {
    fn name(&self) -> &str {
        &self.text
    }
}

//! The contract as the runtime sees it: the bindings generated from `wit/`
//! (`bindgen!`), every conversion between WIT types and the model's
//! ([`convert`]), the dispatch of a request to the pack's export, and the
//! loaded [`pack::Pack`].

pub(crate) mod bindings;
pub(crate) mod convert;
pub(crate) mod dispatch;
pub(crate) mod pack;

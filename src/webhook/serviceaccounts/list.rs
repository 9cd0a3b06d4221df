//! One page of a metadata-only ServiceAccount list, read as it arrives: each item is handed over
//! as soon as it is parsed and everything else (`managedFields`, labels, owner references) is
//! skipped unparsed, so memory stays flat however many ServiceAccounts the page holds.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The part of one listed ServiceAccount the index keeps.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Listed {
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub annotations: Option<BTreeMap<String, String>>,
}

/// What a page says about the list as a whole.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Page {
    /// The list's `metadata.resourceVersion`: where a watch resumes.
    pub resource_version: String,
    /// `metadata.continue`, when the API server paged the list.
    pub continue_token: Option<String>,
}

/// Reads one list page (JSON) from `reader`, calling `each` for every item in order.
pub fn read_page(reader: impl Read, each: &mut dyn FnMut(Listed)) -> serde_json::Result<Page> {
    let mut de = serde_json::Deserializer::from_reader(reader);
    let page = PageSeed { each }.deserialize(&mut de)?;
    de.end()?;
    Ok(page)
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum PageField {
    Metadata,
    Items,
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct ListMeta {
    #[serde(rename = "resourceVersion", default)]
    resource_version: Option<String>,
    #[serde(rename = "continue", default)]
    continue_token: Option<String>,
}

#[derive(Deserialize)]
struct Item {
    #[serde(default)]
    metadata: Listed,
}

struct PageSeed<'a> {
    each: &'a mut dyn FnMut(Listed),
}

impl<'de> DeserializeSeed<'de> for PageSeed<'_> {
    type Value = Page;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Page, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PageSeed<'_> {
    type Value = Page;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Kubernetes list")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Page, A::Error> {
        let mut page = Page::default();
        while let Some(field) = map.next_key()? {
            match field {
                PageField::Metadata => {
                    let meta: Option<ListMeta> = map.next_value()?;
                    if let Some(meta) = meta {
                        page.resource_version = meta.resource_version.unwrap_or_default();
                        page.continue_token = meta.continue_token.filter(|t| !t.is_empty());
                    }
                }
                PageField::Items => map.next_value_seed(ItemsSeed {
                    each: &mut *self.each,
                })?,
                PageField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(page)
    }
}

struct ItemsSeed<'a> {
    each: &'a mut dyn FnMut(Listed),
}

impl<'de> DeserializeSeed<'de> for ItemsSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ItemsSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of ServiceAccounts")
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(()) // `"items": null`, an empty list
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<(), A::Error> {
        while let Some(item) = items.next_element::<Item>()? {
            (self.each)(item.metadata);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> (serde_json::Result<Page>, Vec<Listed>) {
        let mut items = Vec::new();
        let page = read_page(text.as_bytes(), &mut |item| items.push(item));
        (page, items)
    }

    #[test]
    fn a_metadata_list_yields_its_items_and_where_to_resume() {
        // As kube-apiserver 1.37 answers `Accept: ...;as=PartialObjectMetadataList`.
        let text = r#"{"kind":"PartialObjectMetadataList","apiVersion":"meta.k8s.io/v1",
            "metadata":{"resourceVersion":"4711","continue":"eyJ2IjoibWV0YS"},
            "items":[
              {"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":{
                "name":"app","namespace":"team-a","uid":"u1","resourceVersion":"17",
                "creationTimestamp":"2026-12-08T01:00:00Z",
                "labels":{"x":"y"},
                "annotations":{"eks.amazonaws.com/role-arn":"arn:aws:iam::111122223333:role/app",
                  "kubectl.kubernetes.io/last-applied-configuration":"{\"apiVersion\":\"v1\"}"},
                "managedFields":[{"manager":"kubectl","operation":"Update","apiVersion":"v1",
                  "time":"2026-12-08T01:00:00Z","fieldsType":"FieldsV1",
                  "fieldsV1":{"f:metadata":{"f:annotations":{".":{},"f:x":{}}}}}]}},
              {"metadata":{"name":"default","namespace":"team-a","annotations":null}},
              {"metadata":{"name":"é-ünïcode","namespace":"team-b"}}
            ]}"#;
        let (page, items) = read(text);
        assert_eq!(
            page.unwrap(),
            Page {
                resource_version: "4711".into(),
                continue_token: Some("eyJ2IjoibWV0YS".into()),
            }
        );
        let keys: Vec<_> = items
            .iter()
            .map(|i| (i.namespace.as_deref(), i.name.as_deref()))
            .collect();
        assert_eq!(
            keys,
            [
                (Some("team-a"), Some("app")),
                (Some("team-a"), Some("default")),
                (Some("team-b"), Some("é-ünïcode"))
            ]
        );
        let annotations = items[0].annotations.as_ref().unwrap();
        assert_eq!(
            annotations["eks.amazonaws.com/role-arn"],
            "arn:aws:iam::111122223333:role/app"
        );
        assert_eq!(annotations.len(), 2);
        assert_eq!(items[1].annotations, None);
    }

    #[test]
    fn items_before_metadata_empty_and_null_lists_are_read() {
        let (page, items) = read(
            r#"{"items":[{"metadata":{"name":"a","namespace":"n"}}],"metadata":{"resourceVersion":"9","continue":""}}"#,
        );
        assert_eq!(
            page.unwrap(),
            Page {
                resource_version: "9".into(),
                continue_token: None
            }
        );
        assert_eq!(items.len(), 1);
        for text in [
            r#"{"metadata":{"resourceVersion":"3"},"items":[]}"#,
            r#"{"metadata":{"resourceVersion":"3"},"items":null}"#,
        ] {
            let (page, items) = read(text);
            assert_eq!(page.unwrap().resource_version, "3", "{text}");
            assert!(items.is_empty());
        }
    }

    #[test]
    fn a_cut_or_malformed_page_is_an_error_not_a_shorter_list() {
        let whole = r#"{"metadata":{"resourceVersion":"3"},"items":[{"metadata":{"name":"a","namespace":"n"}},{"metadata":{"name":"b","namespace":"n"}}]}"#;
        for cut in [whole.len() - 1, whole.len() - 40, 20] {
            let (page, _) = read(&whole[..cut]);
            assert!(page.is_err(), "cut at {cut} was accepted");
        }
        for text in [
            "[]",
            r#"{"items":{"a":1}}"#,
            r#"{"items":[{"metadata":{"name":7}}]}"#,
            &format!("{whole} {{}}"),
        ] {
            assert!(read(text).0.is_err(), "{text} was accepted");
        }
    }
}

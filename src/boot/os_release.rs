//! (placeholder until the boot branch lands)
use std::collections::BTreeMap;
#[derive(Debug, Clone, Default)]
pub struct OsRelease {
    fields: BTreeMap<String, String>,
}
impl OsRelease {
    pub fn parse(content: &str) -> Self {
        let mut fields = BTreeMap::new();
        for l in content.lines() {
            if let Some((k, v)) = l.split_once('=') {
                fields.insert(k.trim().to_string(), v.trim().trim_matches('"').to_string());
            }
        }
        Self { fields }
    }
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }
    pub fn title(&self) -> String {
        self.get("PRETTY_NAME").unwrap_or("Linux").to_string()
    }
    pub fn version(&self) -> Option<String> {
        self.get("VERSION_ID").map(str::to_string)
    }
    pub fn id(&self) -> Option<&str> {
        self.get("ID")
    }
}

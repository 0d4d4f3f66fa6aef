//! `[values]`: named values and tables of values that processes read as `rules.NAME`.

use super::load::*;
use super::*;

impl Loader {
    // ------------------------------------------------------------ values

    pub(super) fn values_section(&mut self, loc: &Loc, item: &Item) {
        let Some(t) = item.as_table_like() else {
            self.err(loc, "expected a table: `[values]`");
            return;
        };
        for (name, v) in t.iter() {
            let span = t.get_key_value(name).and_then(|(k, _)| k.span()).or(v.span());
            let vloc = loc.child(name, span);
            if !valid_name(name) {
                self.err(&vloc, format!("`{name}` is not a valid name: use lower-case snake_case"));
                continue;
            }
            if !self.define(&vloc, "value", name) {
                continue;
            }
            let value = match v.as_table_like() {
                Some(keyed) => {
                    let mut map = BTreeMap::new();
                    let mut first_kind: Option<(&'static str, String)> = None;
                    for (k, kv) in keyed.iter() {
                        let kloc = vloc.child(k, kv.span());
                        if let Some(x) = self.scalar(&kloc, kv) {
                            // A keyed table is looked up by key in one place of a process: its
                            // entries must be of one kind, or a lookup would change type by key.
                            match &first_kind {
                                None => first_kind = Some((x.type_name(), k.to_string())),
                                Some((kind, first)) if *kind != x.type_name() => self.err(
                                    &kloc,
                                    format!("`{k}` is a {} but `{first}` is a {kind}: entries of one table must be of one kind", x.type_name()),
                                ),
                                _ => {}
                            }
                            map.insert(k.to_string(), x);
                        }
                    }
                    RuleValue::Keyed(map)
                }
                None => match self.scalar(&vloc, v) {
                    Some(x) => RuleValue::Scalar(x),
                    None => continue,
                },
            };
            self.values.insert(name.to_string(), value);
        }
    }

    /// A TOML scalar as a value; strings that read as durations become durations.
    pub(super) fn scalar(&mut self, loc: &Loc, item: &Item) -> Option<Value> {
        let v = match item.as_value() {
            Some(toml_edit::Value::String(s)) => {
                let s = s.value();
                match duration::parse(s) {
                    Ok(d) => Value::Duration(d),
                    Err(_) if s.starts_with(|c: char| c.is_ascii_digit()) => {
                        // Starts like a duration but is not one: most likely a typo.
                        self.err(loc, duration::parse(s).unwrap_err());
                        return None;
                    }
                    Err(_) => Value::Text(s.to_string()),
                }
            }
            Some(toml_edit::Value::Integer(i)) => Value::Int(*i.value()),
            Some(toml_edit::Value::Float(f)) => Value::Decimal(*f.value()),
            Some(toml_edit::Value::Boolean(b)) => Value::Bool(*b.value()),
            Some(toml_edit::Value::Datetime(_)) => Value::Date(self.date_of(loc, item)?),
            _ => {
                self.err(loc, "expected a string, number, bool, date or duration");
                return None;
            }
        };
        Some(v)
    }
}

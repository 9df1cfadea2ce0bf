//! Rendering results the way Cloudpods' climc does (`pkg/util/printutils`,
//! `yunion.io/x/pkg/prettytable`).
//!
//! * Lists: a table whose header cells are centred and whose data cells are
//!   left aligned, with no separators between rows, followed by
//!   `***  Total: N Pages: P Limit: L Offset: O Page: X  ***` (Go's
//!   `fmt.Println("*** ", title, " ***")` puts two spaces on each side).
//!   Columns are the requested ones that at least one row has (matched
//!   case-insensitively, so `Domain_Id` shows `domain_id`), or every key,
//!   sorted, when no columns are known. An empty list prints no table.
//! * Single objects: a `Field | Value` table sorted by key.
//! * Nested values are shown as compact JSON; `flatten-*` formats first
//!   flatten them into dotted keys (`domain.id`, `disks.0.size`).

use std::str::FromStr;

use cloudpods_sdk::ListResult;
use comfy_table::{
    Cell, CellAlignment, ContentArrangement, ContentLineStyle, LineStyle, Table, TableStyle,
};
use serde_json::{Map, Value};

/// `+---+---+` borders, `|` separators, no lines between rows.
const PRETTY: TableStyle = TableStyle::new()
    .top_border(LineStyle::new('+', '-', '+', '+'))
    .header_lines(ContentLineStyle::new('|', '|', '|'))
    .header_separator(LineStyle::new('+', '-', '+', '+'))
    .content_lines(ContentLineStyle::new('|', '|', '|'))
    .bottom_border(LineStyle::new('+', '-', '+', '+'));

/// `--output-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Table,
    Kv,
    Json,
    FlattenTable,
    FlattenKv,
}

impl Format {
    /// Names accepted on the command line.
    pub const NAMES: &'static [&'static str] =
        &["table", "kv", "json", "flatten-table", "flatten-kv"];
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "table" => Ok(Format::Table),
            "kv" => Ok(Format::Kv),
            "json" => Ok(Format::Json),
            "flatten-table" => Ok(Format::FlattenTable),
            "flatten-kv" => Ok(Format::FlattenKv),
            other => Err(format!("unknown output format {other:?}")),
        }
    }
}

/// The text of a value in a table cell.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(_) | Value::Object(_) => v.to_string(),
    }
}

fn new_table() -> Table {
    let mut t = Table::new();
    t.load_style(PRETTY)
        .set_content_arrangement(ContentArrangement::Disabled)
        .force_no_tty();
    t
}

/// Display width of `s` as the table measures it.
fn text_width(s: &str) -> usize {
    let mut t = new_table();
    t.add_row(vec![s]);
    t.column_max_content_widths()
        .first()
        .map_or(0, |w| usize::from(*w))
}

/// A prettytable: centred headers, left-aligned cells, trailing newline.
/// No rows (or no columns) → empty string (as Cloudpods prints nothing).
pub fn pretty_table(headers: &[String], rows: &[Vec<String>]) -> String {
    if rows.is_empty() || headers.is_empty() {
        return String::new();
    }
    let mut t = new_table();
    t.set_header(headers.iter().map(Cell::new).collect::<Vec<_>>());
    for r in rows {
        let cells: Vec<Cell> = r
            .iter()
            .map(|c| Cell::new(c.trim_end_matches('\n')))
            .collect();
        t.add_row(cells);
    }
    // Centre the headers ourselves: Go puts the odd space on the right,
    // comfy-table on the left.
    let widths = t.column_max_content_widths();
    let centred: Vec<Cell> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let w = widths.get(i).map_or(0, |w| usize::from(*w));
            let rem = w.saturating_sub(text_width(h));
            let left = rem / 2;
            Cell::new(format!("{}{h}{}", " ".repeat(left), " ".repeat(rem - left)))
                .set_alignment(CellAlignment::Left)
        })
        .collect();
    t.set_header(centred);
    let mut out = t.to_string();
    out.push('\n');
    out
}

/// Look a key up case-insensitively (Go `GetIgnoreCases`).
pub fn get_ignore_case<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// The columns to show: the wanted ones present in at least one item, in
/// order; every key, sorted, when nothing is wanted.
pub fn list_columns(items: &[Value], wanted: &[String]) -> Vec<String> {
    let objs = items.iter().filter_map(Value::as_object);
    if wanted.is_empty() {
        let mut keys: Vec<String> = objs.flat_map(|o| o.keys().cloned()).collect();
        keys.sort();
        keys.dedup();
        return keys;
    }
    let objs: Vec<&Map<String, Value>> = objs.collect();
    wanted
        .iter()
        .filter(|w| objs.iter().any(|o| get_ignore_case(o, w).is_some()))
        .cloned()
        .collect()
}

/// Columns of a flattened list: each wanted column stands for itself and
/// for every key below it (`scope` → `scope.project.id`, …), in order of
/// first appearance.
pub fn flattened_columns(items: &[Value], wanted: &[String]) -> Vec<String> {
    if wanted.is_empty() {
        return list_columns(items, wanted);
    }
    let mut out: Vec<String> = Vec::new();
    for w in wanted {
        let prefix = format!("{}.", w.to_ascii_lowercase());
        for item in items.iter().filter_map(Value::as_object) {
            for k in item.keys() {
                let lk = k.to_ascii_lowercase();
                let hit = lk == w.to_ascii_lowercase() || lk.starts_with(&prefix);
                if hit && !out.iter().any(|o| o.eq_ignore_ascii_case(k)) {
                    out.push(if lk == w.to_ascii_lowercase() {
                        w.clone()
                    } else {
                        k.clone()
                    });
                }
            }
        }
    }
    out
}

/// Cloudpods' list footer.
pub fn footer(list: &ListResult) -> String {
    let total = if list.total == 0 {
        list.items.len() as u64
    } else {
        list.total
    };
    let mut title = format!("Total: {total}");
    if let Some(field) = &list.marker_field {
        title.push_str(&format!(
            " Field: {field} Order: {}",
            list.marker_order.as_deref().unwrap_or("")
        ));
        if let Some(m) = &list.next_marker {
            title.push_str(&format!(" NextMarker: {m}"));
        }
    } else {
        let mut limit = list.limit;
        if limit == 0 && total > list.items.len() as u64 {
            limit = list.items.len() as u64;
        }
        if limit > 0 {
            let pages = total.div_ceil(limit);
            let page = list.offset / limit + 1;
            title.push_str(&format!(
                " Pages: {pages} Limit: {limit} Offset: {} Page: {page}",
                list.offset
            ));
        }
    }
    format!("***  {title}  ***\n")
}

/// Flatten nested objects and arrays into dotted keys; empty containers
/// disappear (as in Go's `flattenJSONObjectRecursive`).
pub fn flatten(v: &Value) -> Map<String, Value> {
    fn walk(v: &Value, prefix: &str, out: &mut Map<String, Value>) {
        let key = |k: &str| {
            if prefix.is_empty() {
                k.to_owned()
            } else {
                format!("{prefix}.{k}")
            }
        };
        match v {
            Value::Object(m) => {
                for (k, sub) in m {
                    walk(sub, &key(k), out);
                }
            }
            Value::Array(items) => {
                for (i, sub) in items.iter().enumerate() {
                    walk(sub, &key(&i.to_string()), out);
                }
            }
            scalar => {
                out.insert(prefix.to_owned(), scalar.clone());
            }
        }
    }
    let mut out = Map::new();
    match v {
        Value::Object(_) | Value::Array(_) => walk(v, "", &mut out),
        scalar => {
            out.insert(String::new(), scalar.clone());
        }
    }
    out
}

/// A `Field | Value` table sorted by key.
pub fn kv_table(obj: &Map<String, Value>) -> String {
    let mut keys: Vec<&String> = obj.keys().collect();
    keys.sort();
    let rows: Vec<Vec<String>> = keys
        .into_iter()
        .map(|k| vec![k.clone(), obj.get(k).map(value_text).unwrap_or_default()])
        .collect();
    pretty_table(&["Field".to_owned(), "Value".to_owned()], &rows)
}

fn pretty_json(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    s.push('\n');
    s
}

/// Render one object.
pub fn render_object(v: &Value, format: Format) -> String {
    match (format, v) {
        (Format::Json, _) => pretty_json(v),
        (Format::FlattenTable | Format::FlattenKv, _) => kv_table(&flatten(v)),
        (Format::Table | Format::Kv, Value::Object(m)) => kv_table(m),
        (Format::Table | Format::Kv, Value::Null) => String::new(),
        (Format::Table | Format::Kv, other) => format!("{}\n", value_text(other)),
    }
}

/// Render a list page.
pub fn render_list(list: &ListResult, plural: &str, columns: &[String], format: Format) -> String {
    match format {
        Format::Json => pretty_json(&list.to_json(plural)),
        Format::Kv | Format::FlattenKv => {
            let mut out = String::new();
            for item in &list.items {
                out.push_str(&render_object(
                    item,
                    if format == Format::Kv {
                        Format::Kv
                    } else {
                        Format::FlattenKv
                    },
                ));
            }
            out.push_str(&footer(list));
            out
        }
        Format::Table | Format::FlattenTable => {
            let items: Vec<Value> = if format == Format::FlattenTable {
                list.items
                    .iter()
                    .map(|i| Value::Object(flatten(i)))
                    .collect()
            } else {
                list.items.clone()
            };
            let cols = if format == Format::FlattenTable {
                flattened_columns(&items, columns)
            } else {
                list_columns(&items, columns)
            };
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|item| {
                    cols.iter()
                        .map(|c| {
                            item.as_object()
                                .and_then(|o| get_ignore_case(o, c))
                                .map(value_text)
                                .unwrap_or_default()
                        })
                        .collect()
                })
                .collect();
            let mut out = pretty_table(&cols, &rows);
            out.push_str(&footer(list));
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn prettytable_matches_go() {
        // yunion.io/x/pkg/prettytable TestGetString
        let out = pretty_table(
            &strings(&["A", "B"]),
            &[strings(&["a", "b"]), strings(&["c", "d"])],
        );
        assert_eq!(
            out,
            "+---+---+\n| A | B |\n+---+---+\n| a | b |\n| c | d |\n+---+---+\n"
        );
        assert_eq!(pretty_table(&strings(&["A", "B"]), &[]), "");
        assert_eq!(pretty_table(&[], &[vec![], vec![]]), "");
        // odd remainder: the extra space goes right
        let out = pretty_table(&strings(&["ID", "Name"]), &[strings(&["abc", "vm-001"])]);
        assert_eq!(
            out,
            "+-----+--------+\n| ID  |  Name  |\n+-----+--------+\n| abc | vm-001 |\n+-----+--------+\n"
        );
        let out = pretty_table(&strings(&["Field"]), &[strings(&["abcdef"])]);
        assert!(out.contains("| Field  |"), "{out}");
    }

    #[test]
    fn list_golden() {
        let list = ListResult {
            items: vec![
                json!({"id": "u1", "name": "sysadmin", "domain_id": "default", "enabled": true, "extra": {"a": 1}}),
                json!({"id": "u2", "name": "bob", "enabled": false}),
            ],
            total: 2,
            limit: 20,
            ..Default::default()
        };
        let out = render_list(
            &list,
            "users",
            &strings(&["ID", "Name", "Domain_Id", "Enabled", "Email", "Extra"]),
            Format::Table,
        );
        let want = "\
+----+----------+-----------+---------+---------+
| ID |   Name   | Domain_Id | Enabled |  Extra  |
+----+----------+-----------+---------+---------+
| u1 | sysadmin | default   | true    | {\"a\":1} |
| u2 | bob      |           | false   |         |
+----+----------+-----------+---------+---------+
***  Total: 2 Pages: 1 Limit: 20 Offset: 0 Page: 1  ***
";
        assert_eq!(out, want);
    }

    #[test]
    fn footer_variants() {
        let mut l = ListResult {
            items: vec![json!({}); 5],
            total: 45,
            limit: 20,
            offset: 40,
            ..Default::default()
        };
        assert_eq!(
            footer(&l),
            "***  Total: 45 Pages: 3 Limit: 20 Offset: 40 Page: 3  ***\n"
        );
        l = ListResult::default();
        assert_eq!(footer(&l), "***  Total: 0  ***\n");
        l.limit = 20;
        assert_eq!(
            footer(&l),
            "***  Total: 0 Pages: 0 Limit: 20 Offset: 0 Page: 1  ***\n"
        );
        // server omitted total and limit: count the rows
        let l = ListResult {
            items: vec![json!({}); 3],
            ..Default::default()
        };
        assert_eq!(footer(&l), "***  Total: 3  ***\n");
        let l = ListResult {
            items: vec![json!({}); 3],
            total: 7,
            ..Default::default()
        };
        assert_eq!(
            footer(&l),
            "***  Total: 7 Pages: 3 Limit: 3 Offset: 0 Page: 1  ***\n"
        );
        let l = ListResult {
            items: vec![json!({})],
            marker_field: Some("id".into()),
            marker_order: Some("DESC".into()),
            next_marker: Some("m1".into()),
            ..Default::default()
        };
        assert_eq!(
            footer(&l),
            "***  Total: 1 Field: id Order: DESC NextMarker: m1  ***\n"
        );
    }

    #[test]
    fn columns_selection() {
        let items = vec![json!({"b": 1, "a": 2}), json!({"c": 3})];
        assert_eq!(list_columns(&items, &[]), strings(&["a", "b", "c"]));
        assert_eq!(
            list_columns(&items, &strings(&["C", "x", "A"])),
            strings(&["C", "A"])
        );
    }

    #[test]
    fn kv_rendering() {
        let v = json!({"name": "vm", "id": "1", "tags": ["a"], "meta": {"k": "v"}, "n": null, "cpu": 2});
        let want = "\
+-------+-----------+
| Field |   Value   |
+-------+-----------+
| cpu   | 2         |
| id    | 1         |
| meta  | {\"k\":\"v\"} |
| n     |           |
| name  | vm        |
| tags  | [\"a\"]     |
+-------+-----------+
";
        assert_eq!(render_object(&v, Format::Table), want);
        assert_eq!(render_object(&v, Format::Kv), want);
        let flat = render_object(&v, Format::FlattenTable);
        assert!(flat.contains("| meta.k | v     |"), "{flat}");
        assert!(flat.contains("| tags.0 | a     |"), "{flat}");
        assert_eq!(
            render_object(&v, Format::Json),
            format!("{}\n", serde_json::to_string_pretty(&v).expect("json"))
        );
    }

    #[test]
    fn flatten_rules() {
        let v = json!({"a": {"b": {"c": 1}}, "l": [{"x": true}, "s"], "e": [], "o": {}, "z": "q"});
        assert_eq!(
            Value::Object(flatten(&v)),
            json!({"a.b.c": 1, "l.0.x": true, "l.1": "s", "z": "q"})
        );
    }

    #[test]
    fn flatten_table_uses_dotted_columns() {
        let list = ListResult {
            items: vec![json!({"id": "1", "domain": {"id": "d", "name": "Default"}})],
            ..Default::default()
        };
        let out = render_list(
            &list,
            "users",
            &strings(&["id", "domain.name"]),
            Format::FlattenTable,
        );
        assert!(out.contains("| id | domain.name |"), "{out}");
        assert!(out.contains("| 1  | Default     |"), "{out}");
        let out = render_list(
            &list,
            "users",
            &strings(&["ID", "Domain"]),
            Format::FlattenTable,
        );
        assert!(out.contains("| ID | domain.id | domain.name |"), "{out}");
        let json_out = render_list(&list, "users", &[], Format::Json);
        let parsed: Value = serde_json::from_str(&json_out).expect("json");
        assert_eq!(parsed["users"][0]["id"], json!("1"));
    }

    #[test]
    fn format_names() {
        for n in Format::NAMES {
            assert!(n.parse::<Format>().is_ok());
        }
        assert!("yaml".parse::<Format>().is_err());
    }
}

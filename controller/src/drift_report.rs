//! `cloudkit drift`: the objects whose cloud resources differ from their manifests and were
//! left so (`driftPolicy: Report`), with the fields, read from the cluster's status. Exit
//! code 2 when there is any, so that a pipeline can stop on it.

use std::fmt::Write as _;

use cloudkit_crds::common::FieldDrift;
use cloudkit_crds::{Bucket, Function, Managed, Queue, Table, Topic};
use kube::{Api, Client, ResourceExt};
use serde::Serialize;

use crate::status::{self, DRIFTED};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// One drifted object.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Drifted {
    kind: String,
    namespace: String,
    name: String,
    external_name: Option<String>,
    fields: Vec<FieldDrift>,
}

/// The report, and whether any object has drift.
pub async fn report(client: &Client, namespace: Option<&str>, format: Format) -> Result<(String, bool), String> {
    let mut drifted = Vec::new();
    collect::<Bucket>(client, namespace, &mut drifted).await?;
    collect::<Table>(client, namespace, &mut drifted).await?;
    collect::<Queue>(client, namespace, &mut drifted).await?;
    collect::<Topic>(client, namespace, &mut drifted).await?;
    collect::<Function>(client, namespace, &mut drifted).await?;
    let any = !drifted.is_empty();
    let text = match format {
        Format::Json => serde_json::to_string_pretty(&drifted).map_err(|e| e.to_string())? + "\n",
        Format::Table => table(&drifted),
    };
    Ok((text, any))
}

async fn collect<K: Managed>(client: &Client, namespace: Option<&str>, out: &mut Vec<Drifted>) -> Result<(), String> {
    let api: Api<K> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let kind = K::kind(&()).to_string();
    let list = api
        .list(&Default::default())
        .await
        .map_err(|e| format!("listing {kind}s: {e}"))?;
    for obj in list.items {
        let Some(s) = obj.managed_status() else { continue };
        if status::condition(Some(s), DRIFTED).is_some_and(|c| c.status == "True") {
            out.push(Drifted {
                kind: kind.clone(),
                namespace: obj.namespace().unwrap_or_default(),
                name: obj.name_any(),
                external_name: s.external_name.clone(),
                fields: s.drift.clone(),
            });
        }
    }
    Ok(())
}

fn table(drifted: &[Drifted]) -> String {
    if drifted.is_empty() {
        return "No drift.\n".to_owned();
    }
    let rows: Vec<[String; 6]> = drifted
        .iter()
        .flat_map(|d| {
            d.fields.iter().map(move |f| {
                [
                    d.namespace.clone(),
                    format!("{}/{}", d.kind, d.name),
                    f.field.clone(),
                    f.desired.clone(),
                    f.observed.clone(),
                    f.detected_at.clone().unwrap_or_default(),
                ]
            })
        })
        .collect();
    let header = ["NAMESPACE", "OBJECT", "FIELD", "MANIFEST", "CLOUD", "SINCE"];
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([header[i].len()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..header.len()).map(width).collect();
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:w$}")).collect();
        let _ = writeln!(out, "{}", padded.join("  ").trim_end());
    };
    line(&header);
    for r in &rows {
        line(&r.iter().map(String::as_str).collect::<Vec<_>>());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lists_one_line_per_field() {
        let d = Drifted {
            kind: "Bucket".into(),
            namespace: "team-a".into(),
            name: "logs".into(),
            external_name: Some("logs".into()),
            fields: vec![FieldDrift {
                detected_at: Some("2026-12-01T10:00:00Z".into()),
                field: "tags.team".into(),
                desired: "\"a\"".into(),
                observed: "\"b\"".into(),
            }],
        };
        let text = table(&[d]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with("NAMESPACE"));
        assert!(
            lines[1].contains("Bucket/logs") && lines[1].contains("tags.team") && lines[1].contains("\"b\""),
            "{text}"
        );
        assert_eq!(table(&[]), "No drift.\n");
    }
}

//! Kubernetes Events about managed objects, written as kube-runtime's `Recorder` writes them
//! (events.k8s.io/v1, same fields and names) but without its cache.
//!
//! The Recorder keeps every Event it published for six minutes, to count repeats as a
//! series, and walks the whole cache under a write lock on every publish: at 10,000 objects
//! created or deleted inside six minutes that is 10,000–20,000 Events held (most of the
//! memory a mass delete added) and a scan of all of them per Event. CloudKit publishes only
//! news (a condition that changed, a create, a delete), so repeats it would count are rare.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::runtime::events::{Event, EventType, Reporter};
use kube::{Api, Client};

#[derive(Clone)]
pub struct Recorder {
    client: Client,
    controller: String,
    instance: String,
}

impl Recorder {
    pub fn new(client: Client, reporter: Reporter) -> Self {
        let instance = reporter.instance.unwrap_or_else(|| reporter.controller.clone());
        Self {
            client,
            controller: reporter.controller,
            instance,
        }
    }

    pub async fn publish(&self, event: &Event, regarding: &ObjectReference) -> Result<(), kube::Error> {
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        Api::<K8sEvent>::namespaced(self.client.clone(), namespace)
            .create(
                &PostParams::default(),
                &build(&self.controller, &self.instance, event, regarding, Timestamp::now()),
            )
            .await
            .map(|_| ())
    }
}

fn build(controller: &str, instance: &str, event: &Event, regarding: &ObjectReference, now: Timestamp) -> K8sEvent {
    K8sEvent {
        action: Some(event.action.clone()),
        reason: Some(event.reason.clone()),
        event_time: Some(MicroTime(now)),
        regarding: Some(regarding.clone()),
        related: event.secondary.clone(),
        note: event.note.clone(),
        metadata: ObjectMeta {
            namespace: regarding.namespace.clone(),
            // As the Recorder names them: unique per object and nanosecond.
            name: Some(format!(
                "{}.{:x}",
                regarding.name.as_deref().unwrap_or(controller),
                now.as_nanosecond()
            )),
            ..Default::default()
        },
        reporting_controller: Some(controller.to_owned()),
        reporting_instance: Some(instance.to_owned()),
        type_: Some(
            match event.type_ {
                EventType::Normal => "Normal",
                EventType::Warning => "Warning",
            }
            .to_owned(),
        ),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_names_its_object_and_reporter() {
        let regarding = ObjectReference {
            kind: Some("Bucket".into()),
            name: Some("logs".into()),
            namespace: Some("team-a".into()),
            ..Default::default()
        };
        let event = Event {
            type_: EventType::Warning,
            reason: "Stalled".into(),
            note: Some("fix it".into()),
            action: "Reconcile".into(),
            secondary: None,
        };
        let now = Timestamp::from_second(1_700_000_000).expect("a valid time");
        let built = build("cloudkit", "cloudkit-0", &event, &regarding, now);
        assert_eq!(built.metadata.namespace.as_deref(), Some("team-a"));
        assert!(built.metadata.name.as_deref().is_some_and(|n| n.starts_with("logs.")));
        assert_eq!(built.type_.as_deref(), Some("Warning"));
        assert_eq!(built.reason.as_deref(), Some("Stalled"));
        assert_eq!(built.reporting_controller.as_deref(), Some("cloudkit"));
        assert_eq!(built.reporting_instance.as_deref(), Some("cloudkit-0"));
        assert_eq!(built.regarding, Some(regarding));
    }
}

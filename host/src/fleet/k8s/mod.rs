//! Kubernetes: the fleet run as an Indexed Job (`batch/v1`), built from the API's typed
//! objects (`k8s-openapi`) and written as YAML for `kubectl apply -f`.
//!
//! One pod per selected node: `completions` = `parallelism` = the number of nodes, a
//! required node affinity on `kubernetes.io/hostname` to those nodes, and a required pod
//! anti-affinity on the same key among the Job's pods, so no two land on one node. Each
//! pod runs `ozone tune … --output-dir <mount>/$(NODE_NAME)` with the node's name from the
//! downward API, on a volume the user names (a PersistentVolumeClaim every node can mount
//! read-write: ReadWriteMany), and requests the GPUs it tunes.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Container, EnvVar, EnvVarSource, NodeAffinity, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, ObjectFieldSelector, PersistentVolumeClaimVolumeSource, PodAffinityTerm,
    PodAntiAffinity, PodSpec, PodTemplateSpec, ResourceRequirements, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::FleetError;

/// The node label the pods are placed by.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
const NAME_LABEL: &str = "app.kubernetes.io/name";
const VOLUME: &str = "results";

/// What the manifest is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestPlan {
    /// The Job's name (a DNS label).
    pub name: String,
    pub namespace: Option<String>,
    /// A container image with `ozone` and the inference server in it.
    pub image: String,
    /// The `ozone` command inside the image.
    pub ozone: String,
    /// The nodes to tune, by `kubernetes.io/hostname`.
    pub nodes: Vec<String>,
    /// The PersistentVolumeClaim results go to.
    pub results_claim: String,
    /// Where the claim is mounted in each pod.
    pub mount_path: String,
    /// Extended resource name of a GPU (`nvidia.com/gpu`, `amd.com/gpu`).
    pub gpu_resource: String,
    /// GPUs per pod; 0 requests none (CPU inference).
    pub gpus: u32,
    pub models: Vec<String>,
    pub tune_args: Vec<String>,
    /// Pass `--warm-start-from <mount>` to every tune.
    pub shared_warm_start: bool,
}

impl ManifestPlan {
    fn validate(&self) -> Result<(), FleetError> {
        let bad = |m: String| Err(FleetError::BadInput(m));
        // A Job's name becomes its pods' prefix and a label value: a DNS label, with
        // room for the suffixes Kubernetes adds.
        if !dns_label(&self.name) || self.name.len() > 52 {
            return bad(format!(
                "--name {:?}: lowercase letters, digits and '-', at most 52 characters",
                self.name
            ));
        }
        if let Some(ns) = &self.namespace {
            if !dns_label(ns) {
                return bad(format!("--namespace {ns:?}: not a namespace name"));
            }
        }
        if !self.results_claim.split('.').all(dns_label) || self.results_claim.len() > 253 {
            return bad(format!(
                "--results-claim {:?}: not a PersistentVolumeClaim name",
                self.results_claim
            ));
        }
        if !self.mount_path.starts_with('/') {
            return bad(format!(
                "--mount-path {:?}: must be absolute",
                self.mount_path
            ));
        }
        if self.image.trim().is_empty() {
            return bad("--image: empty".into());
        }
        if self.nodes.is_empty() {
            return bad("--nodelist: no node".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(dup) = self.nodes.iter().find(|n| !seen.insert(n.as_str())) {
            return bad(format!("--nodelist: {dup} is listed twice"));
        }
        if self.models.is_empty() {
            return bad("no MODEL to tune".into());
        }
        Ok(())
    }

    /// The arguments after `ozone`. Kubernetes expands `$(VAR)` in them: user text is
    /// escaped (`$$`), only the node's folder uses `$(NODE_NAME)`.
    fn args(&self) -> Vec<String> {
        let escape = |s: &String| s.replace("$(", "$$(");
        let mut args = vec!["tune".to_string()];
        args.extend(self.tune_args.iter().map(escape));
        if self.shared_warm_start {
            args.extend(["--warm-start-from".into(), escape(&self.mount_path)]);
        }
        args.extend([
            "--output-dir".into(),
            format!(
                "{}/$(NODE_NAME)",
                escape(&self.mount_path.trim_end_matches('/').to_string())
            ),
            "--".into(),
        ]);
        args.extend(self.models.iter().map(escape));
        args
    }
}

/// The Indexed Job of `plan`.
pub fn job(plan: &ManifestPlan) -> Result<Job, FleetError> {
    plan.validate()?;
    let count = i32::try_from(plan.nodes.len())
        .map_err(|_| FleetError::BadInput("--nodelist: too many nodes".into()))?;
    let labels = BTreeMap::from([
        (NAME_LABEL.to_string(), "ozone-fleet".to_string()),
        (INSTANCE_LABEL.to_string(), plan.name.clone()),
    ]);
    let gpus = (plan.gpus > 0)
        .then(|| BTreeMap::from([(plan.gpu_resource.clone(), Quantity(plan.gpus.to_string()))]));
    let container = Container {
        name: "ozone".into(),
        image: Some(plan.image.clone()),
        command: Some(vec![plan.ozone.clone()]),
        args: Some(plan.args()),
        env: Some(vec![EnvVar {
            name: "NODE_NAME".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "spec.nodeName".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        // Extended resources (GPUs) are requested through limits.
        resources: gpus.map(|limits| ResourceRequirements {
            limits: Some(limits),
            ..Default::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: VOLUME.into(),
            mount_path: plan.mount_path.clone(),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let affinity = Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: Some(vec![NodeSelectorRequirement {
                        key: HOSTNAME_LABEL.into(),
                        operator: "In".into(),
                        values: Some(plan.nodes.clone()),
                    }]),
                    ..Default::default()
                }],
            }),
            ..Default::default()
        }),
        pod_anti_affinity: Some(PodAntiAffinity {
            required_during_scheduling_ignored_during_execution: Some(vec![PodAffinityTerm {
                label_selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([(
                        INSTANCE_LABEL.to_string(),
                        plan.name.clone(),
                    )])),
                    ..Default::default()
                }),
                topology_key: HOSTNAME_LABEL.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(plan.name.clone()),
            namespace: plan.namespace.clone(),
            labels: Some(labels.clone()),
            ..Default::default()
        },
        spec: Some(JobSpec {
            completion_mode: Some("Indexed".into()),
            completions: Some(count),
            parallelism: Some(count),
            // A failed tune is not retried: its log and summary say why, and a retry
            // would measure the same node again. Other indexes go on.
            backoff_limit_per_index: Some(0),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    affinity: Some(affinity),
                    containers: vec![container],
                    volumes: Some(vec![Volume {
                        name: VOLUME.into(),
                        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                            claim_name: plan.results_claim.clone(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The manifest as YAML, with a comment saying how to use it.
pub fn manifest_yaml(plan: &ManifestPlan) -> Result<String, FleetError> {
    let job = job(plan)?;
    let yaml = serde_yaml::to_string(&job)
        .map_err(|e| FleetError::BadInput(format!("cannot encode the Job: {e}")))?;
    Ok(format!(
        "# Written by ozone {}: tunes {} on {} node(s), one pod per node.\n\
         # Submit with `kubectl apply -f <this file>`; results land in the claim {} under\n\
         # <node name>/ (the claim must be ReadWriteMany); then `ozone fleet report` on a copy.\n{yaml}",
        env!("CARGO_PKG_VERSION"),
        plan.models.join(", "),
        plan.nodes.len(),
        plan.results_claim
    ))
}

/// An RFC 1123 label: lowercase letters, digits and '-', starting and ending alphanumeric.
fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> ManifestPlan {
        ManifestPlan {
            name: "ozone-fleet".into(),
            namespace: Some("ml".into()),
            image: "registry.example/ozone:0.1".into(),
            ozone: "ozone".into(),
            nodes: vec!["gpu-a1".into(), "gpu-a2".into(), "gpu-b1".into()],
            results_claim: "ozone-results".into(),
            mount_path: "/results".into(),
            gpu_resource: "nvidia.com/gpu".into(),
            gpus: 1,
            models: vec!["/results/models/qwen $(x).gguf".into()],
            tune_args: vec!["--skip-concurrency".into()],
            shared_warm_start: true,
        }
    }

    /// The YAML parses back as a `batch/v1` Job (k8s-openapi checks apiVersion and kind
    /// and every field's type) with the fields the fleet relies on.
    #[test]
    fn the_manifest_is_an_indexed_job_with_one_pod_per_node() {
        let yaml = manifest_yaml(&plan()).unwrap();
        let raw: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(raw["apiVersion"].as_str(), Some("batch/v1"));
        assert_eq!(raw["kind"].as_str(), Some("Job"));
        let job: Job = serde_yaml::from_str(&yaml).expect("a batch/v1 Job");
        assert_eq!(job.metadata.namespace.as_deref(), Some("ml"));
        let spec = job.spec.unwrap();
        assert_eq!(spec.completion_mode.as_deref(), Some("Indexed"));
        assert_eq!((spec.completions, spec.parallelism), (Some(3), Some(3)));
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));

        let affinity = pod.affinity.unwrap();
        let terms = affinity
            .node_affinity
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .unwrap()
            .node_selector_terms;
        let requirement = &terms[0].match_expressions.as_ref().unwrap()[0];
        assert_eq!(requirement.key, "kubernetes.io/hostname");
        assert_eq!(requirement.operator, "In");
        assert_eq!(
            requirement.values.as_deref().unwrap(),
            ["gpu-a1", "gpu-a2", "gpu-b1"]
        );
        let anti = &affinity
            .pod_anti_affinity
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .unwrap()[0];
        assert_eq!(anti.topology_key, "kubernetes.io/hostname");
        let pod_labels = spec.template.metadata.unwrap().labels.unwrap();
        for (k, v) in anti
            .label_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap()
        {
            assert_eq!(
                pod_labels.get(k),
                Some(v),
                "the anti-affinity selects the Job's pods"
            );
        }

        let container = &pod.containers[0];
        let limits = container
            .resources
            .as_ref()
            .unwrap()
            .limits
            .as_ref()
            .unwrap();
        assert_eq!(limits["nvidia.com/gpu"], Quantity("1".into()));
        let mount = &container.volume_mounts.as_ref().unwrap()[0];
        assert_eq!(mount.mount_path, "/results");
        let volume = &pod.volumes.as_ref().unwrap()[0];
        assert_eq!(volume.name, mount.name);
        assert_eq!(
            volume.persistent_volume_claim.as_ref().unwrap().claim_name,
            "ozone-results"
        );
        assert_eq!(
            container.args.as_deref().unwrap(),
            [
                "tune",
                "--skip-concurrency",
                "--warm-start-from",
                "/results",
                "--output-dir",
                "/results/$(NODE_NAME)",
                "--",
                "/results/models/qwen $$(x).gguf",
            ]
        );
        let env = &container.env.as_ref().unwrap()[0];
        assert_eq!(env.name, "NODE_NAME");
        assert_eq!(
            env.value_from
                .as_ref()
                .unwrap()
                .field_ref
                .as_ref()
                .unwrap()
                .field_path,
            "spec.nodeName"
        );
    }

    #[test]
    fn no_gpu_request_without_gpus_and_bad_names_are_refused() {
        let mut p = plan();
        p.gpus = 0;
        let job = job(&p).unwrap();
        let pod = job.spec.unwrap().template.spec.unwrap();
        assert!(pod.containers[0].resources.is_none());

        for (mutate, flag) in [
            (
                Box::new(|p: &mut ManifestPlan| p.name = "Ozone_Fleet".into())
                    as Box<dyn Fn(&mut ManifestPlan)>,
                "--name",
            ),
            (
                Box::new(|p: &mut ManifestPlan| p.results_claim = "a b".into()),
                "--results-claim",
            ),
            (
                Box::new(|p: &mut ManifestPlan| p.mount_path = "results".into()),
                "--mount-path",
            ),
            (
                Box::new(|p: &mut ManifestPlan| p.nodes.push("gpu-a1".into())),
                "--nodelist",
            ),
        ] {
            let mut p = plan();
            mutate(&mut p);
            let err = super::job(&p).unwrap_err();
            assert!(
                err.is_bad_input() && err.to_string().starts_with(flag),
                "{err}"
            );
        }
    }
}

output "cluster_name" {
  description = "Name of the GKE cluster."
  value       = google_container_cluster.this.name
}

output "cluster_location" {
  description = "Region of the GKE cluster."
  value       = google_container_cluster.this.location
}

output "cluster_endpoint" {
  description = "Public IP of the Kubernetes API (reachable from master_authorized_networks only)."
  value       = google_container_cluster.this.endpoint
  sensitive   = true
}

output "get_credentials_command" {
  description = "Command that writes a kubeconfig entry for the cluster, for kubectl, helm and `flexrl submit`."
  value       = "gcloud container clusters get-credentials ${google_container_cluster.this.name} --region ${var.region} --project ${var.project_id}"
}

output "gpu_node_pool" {
  description = "Name, accelerator and autoscaling bounds of the GPU node pool (it scales from 0)."
  value = {
    name      = google_container_node_pool.gpu.name
    gpu_type  = var.gpu_type
    gpu_count = var.gpu_count
    min_nodes = 0
    max_nodes = var.gpu_max_nodes
  }
}

output "gpu_node_selector" {
  description = "nodeSelector that puts a pod on the GPU pool (the chart gets it as gpu.nodeSelector)."
  value       = local.gpu_node_selector
}

output "gpu_tolerations" {
  description = "Tolerations a pod needs for the GPU nodes' taint (the chart gets them as gpu.tolerations)."
  value       = local.gpu_tolerations
}

output "artifact_bucket" {
  description = "Name of the versioned artifact bucket (MLflow artifacts, output notebooks)."
  value       = google_storage_bucket.artifacts.name
}

output "artifact_bucket_url" {
  description = "gs:// URL of the artifact bucket."
  value       = google_storage_bucket.artifacts.url
}

output "mlflow_tracking_uri" {
  description = "MLflow tracking URI the chart's pods use: the external one given, or the in-cluster Service of the chart's MLflow server."
  value       = local.mlflow_tracking_uri
}

output "workload_service_account" {
  description = "Google service account the chart's pods act as through Workload Identity (may read and write the artifact bucket)."
  value       = google_service_account.workload.email
}

output "helm_release" {
  description = "Namespace, name and status of the Helm release of k8s/flexrl."
  value = {
    namespace = helm_release.flexrl.namespace
    name      = helm_release.flexrl.name
    status    = helm_release.flexrl.status
  }
}

output "job_values_yaml" {
  description = "Helm values for notebook Jobs in this cluster (`helm template ... -f` or `flexrl submit`): Workload Identity ServiceAccount, GPU pool, MLflow URI."
  value       = yamlencode(local.job_values)
}

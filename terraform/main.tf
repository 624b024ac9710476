# flex-rl on GKE: a private, regional cluster with an always-on CPU pool and a GPU pool that scales to
# zero, a versioned artifact bucket for MLflow artifacts and output notebooks, and the Helm release of
# the project's chart (k8s/flexrl) wired to both through Workload Identity.

provider "google" {
  project        = var.project_id
  region         = var.region
  default_labels = local.labels
}

data "google_client_config" "current" {}

provider "helm" {
  kubernetes = {
    host                   = "https://${google_container_cluster.this.endpoint}"
    token                  = data.google_client_config.current.access_token
    cluster_ca_certificate = base64decode(google_container_cluster.this.master_auth[0].cluster_ca_certificate)
  }
}

resource "google_project_service" "apis" {
  for_each = toset(["compute.googleapis.com", "container.googleapis.com", "iam.googleapis.com", "storage.googleapis.com"])
  service  = each.value
}

# --- network: private nodes reach the internet (image pulls) through Cloud NAT only ---------------

resource "google_compute_network" "this" {
  name                    = "${var.cluster_name}-net"
  auto_create_subnetworks = false
  depends_on              = [google_project_service.apis]
}

resource "google_compute_subnetwork" "nodes" {
  name                     = "${var.cluster_name}-nodes"
  region                   = var.region
  network                  = google_compute_network.this.id
  ip_cidr_range            = var.subnet_cidr
  private_ip_google_access = true

  secondary_ip_range {
    range_name    = "pods"
    ip_cidr_range = var.pods_cidr
  }
  secondary_ip_range {
    range_name    = "services"
    ip_cidr_range = var.services_cidr
  }

  log_config {
    aggregation_interval = "INTERVAL_10_MIN"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

# Explicit lowest-priority deny (and log) of all other ingress; GKE adds the allow rules it needs
# (control plane to nodes, node and pod traffic) at higher priority.
resource "google_compute_firewall" "deny_ingress" {
  name      = "${var.cluster_name}-deny-ingress"
  network   = google_compute_network.this.id
  direction = "INGRESS"
  priority  = 65534

  deny {
    protocol = "all"
  }
  source_ranges = ["0.0.0.0/0"]

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_router" "this" {
  name    = "${var.cluster_name}-router"
  region  = var.region
  network = google_compute_network.this.id
}

resource "google_compute_router_nat" "this" {
  name                               = "${var.cluster_name}-nat"
  region                             = var.region
  router                             = google_compute_router.this.name
  nat_ip_allocate_option             = "AUTO_ONLY"
  source_subnetwork_ip_ranges_to_nat = "ALL_SUBNETWORKS_ALL_IP_RANGES"

  log_config {
    enable = true
    filter = "ERRORS_ONLY"
  }
}

# --- service accounts: least-privilege nodes, and the identity of the chart's pods ----------------

resource "google_service_account" "nodes" {
  account_id   = "${var.cluster_name}-nodes"
  display_name = "GKE nodes of ${var.cluster_name}"
  depends_on   = [google_project_service.apis]
}

resource "google_project_iam_member" "nodes" {
  for_each = toset(["roles/container.defaultNodeServiceAccount", "roles/artifactregistry.reader"])
  project  = var.project_id
  role     = each.value
  member   = "serviceAccount:${google_service_account.nodes.email}"
}

resource "google_service_account" "workload" {
  account_id   = local.workload_sa_id
  display_name = "flexrl pods of ${var.cluster_name} (Workload Identity)"
  depends_on   = [google_project_service.apis]
}

resource "google_service_account_iam_member" "workload_identity" {
  service_account_id = google_service_account.workload.name
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${var.project_id}.svc.id.goog[${var.namespace}/${var.kubernetes_service_account}]"
  depends_on         = [google_container_cluster.this] # the identity pool exists once the cluster does
}

# --- cluster ---------------------------------------------------------------------------------------

resource "google_container_cluster" "this" {
  #checkov:skip=CKV_GCP_65:Google Groups for RBAC needs a Google Workspace domain group; access is granted with IAM roles instead.
  #checkov:skip=CKV_GCP_24:PodSecurityPolicy was removed in Kubernetes 1.25; Pod Security Admission replaces it and GKE enables it by default.
  name                = var.cluster_name
  location            = var.region
  deletion_protection = var.deletion_protection
  resource_labels     = local.base_labels # plus var.labels, through the provider's default_labels

  # Node pools are managed below; the default pool is created (API requirement) and deleted at once.
  remove_default_node_pool = true
  initial_node_count       = 1

  network         = google_compute_network.this.id
  subnetwork      = google_compute_subnetwork.nodes.id
  networking_mode = "VPC_NATIVE"
  ip_allocation_policy {
    cluster_secondary_range_name  = "pods"
    services_secondary_range_name = "services"
  }

  private_cluster_config {
    enable_private_nodes    = true
    enable_private_endpoint = false # public endpoint, but only for master_authorized_networks
    master_ipv4_cidr_block  = var.master_ipv4_cidr_block
  }
  master_authorized_networks_config {
    dynamic "cidr_blocks" {
      for_each = var.master_authorized_networks
      content {
        cidr_block   = cidr_blocks.value.cidr_block
        display_name = cidr_blocks.value.display_name
      }
    }
  }
  master_auth {
    client_certificate_config {
      issue_client_certificate = false
    }
  }

  release_channel {
    channel = var.release_channel
  }
  workload_identity_config {
    workload_pool = "${var.project_id}.svc.id.goog"
  }
  enable_shielded_nodes       = true
  enable_intranode_visibility = true
  enable_legacy_abac          = false
  datapath_provider           = "ADVANCED_DATAPATH" # Dataplane V2 enforces NetworkPolicy itself...
  network_policy {
    enabled = false # ...so the legacy Calico add-on stays off
  }
  binary_authorization {
    evaluation_mode = "PROJECT_SINGLETON_POLICY_ENFORCE"
  }

  logging_config {
    enable_components = ["SYSTEM_COMPONENTS", "WORKLOADS"]
  }
  monitoring_config {
    enable_components = ["SYSTEM_COMPONENTS"]
  }
  cost_management_config {
    enabled = true
  }

  # Settings of the short-lived default pool, hardened like the real pools.
  node_config {
    service_account = google_service_account.nodes.email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    image_type      = "COS_CONTAINERD"
    metadata        = { disable-legacy-endpoints = "true" }
    workload_metadata_config {
      mode = "GKE_METADATA"
    }
    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
  }

  lifecycle {
    ignore_changes = [node_config, initial_node_count] # they only describe the deleted default pool
  }
  depends_on = [google_project_service.apis, google_project_iam_member.nodes]
}

# Always-on CPU pool: system pods, the MLflow server, CPU-only jobs.
resource "google_container_node_pool" "system" {
  name               = "system"
  cluster            = google_container_cluster.this.id
  location           = var.region
  initial_node_count = var.system_min_nodes

  autoscaling {
    min_node_count = var.system_min_nodes
    max_node_count = var.system_max_nodes
  }
  management {
    auto_repair  = true
    auto_upgrade = true
  }
  upgrade_settings {
    max_surge       = 1
    max_unavailable = 0
  }

  node_config {
    machine_type    = var.system_machine_type
    image_type      = "COS_CONTAINERD"
    disk_type       = "pd-balanced"
    disk_size_gb    = 100
    service_account = google_service_account.nodes.email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    resource_labels = local.labels
    labels          = { "flexrl/pool" = "system" }
    metadata        = { disable-legacy-endpoints = "true" }
    workload_metadata_config {
      mode = "GKE_METADATA"
    }
    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
  }
}

# GPU pool: 0 nodes until a GPU pod is pending; the cluster autoscaler adds nodes up to gpu_max_nodes
# and removes them again once they are idle, so an idle cluster costs no GPU time.
resource "google_container_node_pool" "gpu" {
  name               = "gpu"
  cluster            = google_container_cluster.this.id
  location           = var.region
  node_locations     = var.gpu_zones
  initial_node_count = 0

  autoscaling {
    total_min_node_count = 0
    total_max_node_count = var.gpu_max_nodes
    location_policy      = "ANY" # take GPUs from whichever zone has capacity
  }
  management {
    auto_repair  = true
    auto_upgrade = true
  }
  upgrade_settings {
    max_surge       = 1
    max_unavailable = 0
  }

  node_config {
    machine_type    = var.gpu_machine_type
    spot            = var.gpu_spot
    image_type      = "COS_CONTAINERD"
    disk_type       = "pd-balanced"
    disk_size_gb    = var.gpu_disk_size_gb
    service_account = google_service_account.nodes.email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    resource_labels = local.labels
    labels          = { "flexrl/pool" = "gpu" }
    metadata        = { disable-legacy-endpoints = "true" }

    guest_accelerator {
      type  = var.gpu_type
      count = var.gpu_count
      gpu_driver_installation_config {
        gpu_driver_version = "LATEST" # GKE installs the NVIDIA driver; no driver DaemonSet to manage
      }
    }
    gcfs_config {
      enabled = true # image streaming: large CUDA images start before they are fully pulled
    }
    gvnic {
      enabled = true
    }
    workload_metadata_config {
      mode = "GKE_METADATA"
    }
    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
  }
}

# --- artifact bucket: MLflow artifacts and output notebooks -----------------------------------------

resource "google_storage_bucket" "artifacts" {
  #checkov:skip=CKV_GCP_62:Access logs would need a second bucket that itself has no access logs; object access is audited with Cloud Audit Logs (Data Access) instead.
  name                        = local.bucket_name
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = !var.deletion_protection

  versioning {
    enabled = true
  }
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.bucket_noncurrent_days
    }
    action {
      type = "Delete"
    }
  }
  dynamic "encryption" {
    for_each = var.bucket_kms_key_name == null ? [] : [var.bucket_kms_key_name]
    content {
      default_kms_key_name = encryption.value
    }
  }
  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket_iam_member" "workload" {
  bucket = google_storage_bucket.artifacts.name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_service_account.workload.email}"
}

# --- the Helm release of k8s/flexrl -----------------------------------------------------------------

resource "helm_release" "flexrl" {
  name             = var.release_name
  chart            = local.chart_dir
  namespace        = var.namespace
  create_namespace = true
  atomic           = true # a failed install or upgrade is rolled back
  cleanup_on_fail  = true
  timeout          = 900 # the inference server may wait for a GPU node to scale up from zero
  values           = [yamlencode(local.helm_values)]

  depends_on = [
    google_container_node_pool.system,
    google_container_node_pool.gpu,
    google_service_account_iam_member.workload_identity,
    google_storage_bucket_iam_member.workload,
  ]
}

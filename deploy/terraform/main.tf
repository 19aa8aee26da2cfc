# eipool's AWS side: the pool (tagged Elastic IPs), the node role the media pods use (IRSA or EKS
# Pod Identity) and the operator role. The roles' permissions are policies/node.json and
# policies/operator.json in this folder, byte-for-byte copies of deploy/iam/*.json (one source:
# scripts/check_terraform.py fails on any difference), with the pool's name put in place of
# `media-prod`. The module reads nothing outside its folder, so it works wherever it is packed
# alone (tfmod, a registry, a copy).

locals {
  prefix = coalesce(var.name_prefix, "eipool-${var.pool_name}")
  pool_tags = merge(var.tags, { "eipool:pool" = var.pool_name })

  # The only change made to the policies: the example pool name becomes this pool's (it appears
  # in them only as the value of the eipool:pool tag conditions).
  node_policy     = replace(file("${path.module}/policies/node.json"), "\"media-prod\"", jsonencode(var.pool_name))
  operator_policy = replace(file("${path.module}/policies/operator.json"), "\"media-prod\"", jsonencode(var.pool_name))

  oidc_host = var.oidc_provider_arn == null ? "" : element(split("oidc-provider/", var.oidc_provider_arn), 1)
  node_trust = {
    irsa = {
      Version = "2012-10-17"
      Statement = [{
        Effect    = "Allow"
        Principal = { Federated = var.oidc_provider_arn }
        Action    = "sts:AssumeRoleWithWebIdentity"
        Condition = {
          StringEquals = {
            "${local.oidc_host}:sub" = "system:serviceaccount:${var.namespace}:${var.service_account}"
            "${local.oidc_host}:aud" = "sts.amazonaws.com"
          }
        }
      }]
    }
    # EKS Pod Identity assumes the role for any association in the account that names it, and
    # tags the session with the pod's cluster, namespace and ServiceAccount (its documented request
    # tags): the trust takes only this cluster's media pods. The association keeps its session tags
    # (the default; disable_session_tags would make every assumption fail here).
    pod_identity = {
      Version = "2012-10-17"
      Statement = [{
        Effect    = "Allow"
        Principal = { Service = "pods.eks.amazonaws.com" }
        Action    = ["sts:AssumeRole", "sts:TagSession"]
        Condition = {
          StringEquals = {
            "aws:RequestTag/eks-cluster-arn"            = one(data.aws_eks_cluster.pod_identity[*].arn)
            "aws:RequestTag/kubernetes-namespace"       = var.namespace
            "aws:RequestTag/kubernetes-service-account" = var.service_account
          }
        }
      }]
    }
  }
}

# The cluster's ARN for the Pod Identity trust.
data "aws_eks_cluster" "pod_identity" {
  count = var.node_trust == "pod_identity" ? 1 : 0
  name  = var.cluster_name
}

# --- The pool -----------------------------------------------------------------------------------

# Addresses customers allow-list: releasing one loses it for good, so Terraform refuses to.
resource "aws_eip" "published" {
  #checkov:skip=CKV2_AWS_19:eipool associates pool addresses to media nodes at run time; an address held free in the pool is by design.
  count            = var.published_addresses
  domain           = "vpc"
  ipam_pool_id     = var.ipam_pool_id
  public_ipv4_pool = var.public_ipv4_pool
  tags             = merge(local.pool_tags, { Name = "${var.pool_name}-${count.index}" })

  lifecycle {
    prevent_destroy = true
    # eipool records the holder on the address (eipool:holder); the association is eipool's too
    # (this resource sets neither instance nor network_interface, so Terraform leaves it alone).
    ignore_changes = [tags["eipool:holder"]]
  }
}

# Addresses not (yet) sent to customers: free to destroy.
resource "aws_eip" "unpublished" {
  #checkov:skip=CKV2_AWS_19:eipool associates pool addresses to media nodes at run time; an address held free in the pool is by design.
  count            = var.unpublished_addresses
  domain           = "vpc"
  ipam_pool_id     = var.ipam_pool_id
  public_ipv4_pool = var.public_ipv4_pool
  tags             = merge(local.pool_tags, { Name = "${var.pool_name}-unpublished-${count.index}" })

  lifecycle {
    ignore_changes = [tags["eipool:holder"]]
  }
}

# Addresses made elsewhere, tagged into the pool.
resource "aws_ec2_tag" "existing" {
  for_each    = toset(var.existing_allocation_ids)
  resource_id = each.value
  key         = "eipool:pool"
  value       = var.pool_name
}

data "aws_eip" "existing" {
  for_each = toset(var.existing_allocation_ids)
  id       = each.value
}

data "aws_vpc_ipam_pool_cidrs" "pool" {
  count        = var.ipam_pool_id == null ? 0 : 1
  ipam_pool_id = var.ipam_pool_id
}

# --- The node role: the media pods (claim, agent, release) and the exporter ----------------------

resource "aws_iam_role" "node" {
  name                 = "${local.prefix}-node"
  description          = "eipool media pods of pool ${var.pool_name}: claim, verify and release pool addresses (deploy/iam/node.json)"
  assume_role_policy   = jsonencode(local.node_trust[var.node_trust])
  permissions_boundary = var.permissions_boundary
  tags                 = var.tags

  lifecycle {
    precondition {
      condition     = var.node_trust != "irsa" || var.oidc_provider_arn != null
      error_message = "node_trust = \"irsa\" needs oidc_provider_arn (the cluster's IAM OIDC provider)."
    }
    precondition {
      condition     = var.node_trust != "pod_identity" || var.cluster_name != null
      error_message = "node_trust = \"pod_identity\" needs cluster_name."
    }
  }
}

resource "aws_iam_role_policy" "node" {
  name   = "eipool-node"
  role   = aws_iam_role.node.id
  policy = local.node_policy
}

resource "aws_eks_pod_identity_association" "node" {
  count           = var.node_trust == "pod_identity" ? 1 : 0
  cluster_name    = var.cluster_name
  namespace       = var.namespace
  service_account = var.service_account
  role_arn        = aws_iam_role.node.arn
  tags            = var.tags
}

# --- The operator role: status, gc, pool grow/shrink, doctor --role operator ---------------------

resource "aws_iam_role" "operator" {
  count       = length(var.operator_principal_arns) > 0 ? 1 : 0
  name        = "${local.prefix}-operator"
  description = "eipool operators of pool ${var.pool_name}: status, gc, pool grow/shrink (deploy/iam/operator.json)"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { AWS = var.operator_principal_arns }
      Action    = "sts:AssumeRole"
    }]
  })
  permissions_boundary = var.permissions_boundary
  tags                 = var.tags
}

resource "aws_iam_role_policy" "operator" {
  count  = length(aws_iam_role.operator)
  name   = "eipool-operator"
  role   = aws_iam_role.operator[0].id
  policy = local.operator_policy
}

variable "pool_name" {
  description = "The pool: the Elastic IPs tagged eipool:pool=<pool_name> (the chart's `pool`, eipool's --pool). Replaces `media-prod` in deploy/iam/*.json."
  type        = string
  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$", var.pool_name))
    error_message = "pool_name: letters, digits, '.', '_' or '-', at most 63 characters."
  }
}

variable "published_addresses" {
  description = "How many Elastic IPs to allocate that customers allow-list. Each has prevent_destroy: lowering this number makes the plan fail instead of releasing an address for good."
  type        = number
  default     = 0
  validation {
    condition     = var.published_addresses >= 0 && floor(var.published_addresses) == var.published_addresses
    error_message = "published_addresses: a whole number, 0 or more."
  }
}

variable "unpublished_addresses" {
  description = "How many Elastic IPs to allocate that are not yet sent to customers (a trial, or headroom before the next announcement); these can be destroyed. To publish one, move it with `terraform state mv` into published, or raise published_addresses."
  type        = number
  default     = 0
  validation {
    condition     = var.unpublished_addresses >= 0 && floor(var.unpublished_addresses) == var.unpublished_addresses
    error_message = "unpublished_addresses: a whole number, 0 or more."
  }
}

variable "existing_allocation_ids" {
  description = "Elastic IPs made elsewhere (eipalloc-...) to tag into the pool. Terraform manages only their eipool:pool tag."
  type        = list(string)
  default     = []
}

variable "ipam_pool_id" {
  description = "Allocate the addresses from this IPAM pool (a contiguous, publishable range). At most one of ipam_pool_id and public_ipv4_pool."
  type        = string
  default     = null
}

variable "public_ipv4_pool" {
  description = "Allocate the addresses from this BYOIP pool (ipv4pool-ec2-...). At most one of ipam_pool_id and public_ipv4_pool."
  type        = string
  default     = null
  validation {
    condition     = var.public_ipv4_pool == null || var.ipam_pool_id == null
    error_message = "Set at most one of ipam_pool_id and public_ipv4_pool."
  }
}

variable "node_trust" {
  description = "How the media pods get the node role: \"irsa\" (an OIDC provider of the cluster; the chart's serviceAccount.roleArn) or \"pod_identity\" (EKS Pod Identity; this module associates the role with the ServiceAccount)."
  type        = string
  default     = "irsa"
  validation {
    condition     = contains(["irsa", "pod_identity"], var.node_trust)
    error_message = "node_trust: \"irsa\" or \"pod_identity\"."
  }
}

variable "oidc_provider_arn" {
  description = "With node_trust = \"irsa\": the cluster's IAM OIDC provider, arn:aws:iam::ACCOUNT:oidc-provider/oidc.eks.REGION.amazonaws.com/id/ID."
  type        = string
  default     = null
  validation {
    condition     = var.oidc_provider_arn == null || can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/.+", var.oidc_provider_arn))
    error_message = "oidc_provider_arn: arn:aws:iam::ACCOUNT:oidc-provider/HOST/id/ID."
  }
}

variable "cluster_name" {
  description = "With node_trust = \"pod_identity\": the EKS cluster whose ServiceAccount gets the node role."
  type        = string
  default     = null
}

variable "namespace" {
  description = "Namespace of the media pods and the exporter."
  type        = string
  default     = "media"
}

variable "service_account" {
  description = "Their ServiceAccount: the IRSA trust and the Pod Identity association name it. The default, eipool, is the chart's and the kustomize base's (scripts/check_defaults.py keeps the three equal)."
  type        = string
  default     = "eipool"
}

variable "operator_principal_arns" {
  description = "Who may assume the operator role (status, gc, pool grow/shrink, doctor --role operator): IAM users, roles or accounts (arn:aws:iam::ACCOUNT:root). Empty: no operator role."
  type        = list(string)
  default     = []
}

variable "name_prefix" {
  description = "Prefix of the roles' names: <prefix>-node and <prefix>-operator (default: eipool-<pool_name>)."
  type        = string
  default     = null
}

variable "permissions_boundary" {
  description = "Permissions boundary ARN for both roles, where your account requires one."
  type        = string
  default     = null
}

variable "tags" {
  description = "Extra tags on every resource (eipool:pool is set by the module on the addresses)."
  type        = map(string)
  default     = {}
}

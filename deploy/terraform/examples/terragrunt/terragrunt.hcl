# eipool's AWS side for one pool with Terragrunt: copy this folder into your live repository
# (e.g. live/prod/us-east-1/eipool-media-prod/) and point `source` at your copy of eipool's
# repository. The module reads nothing outside its folder, so any source works: the repository with
# `//` before the folder, as below, or the folder published with tfmod.

terraform {
  # Pin a commit or a release tag of eipool, never a branch. No release is tagged yet (v0.1.0
  # will be the first, see CHANGELOG.md): this is the commit whose module the README describes;
  # scripts/check-deploy checks that it exists and that its module is self-contained.
  source = "git::https://git.example.com/sre/eipool.git//deploy/terraform?ref=2f0173784e8e445fdf9434ad5cbb2349d60744f7"
}

# Your root terragrunt.hcl configures the remote state and the AWS provider (region, account).
include "root" {
  path = find_in_parent_folders("root.hcl")
}

# The cluster's OIDC provider, from your EKS stack (IRSA); with EKS Pod Identity give
# node_trust = "pod_identity" and cluster_name instead.
dependency "eks" {
  config_path = "../eks"
  mock_outputs = {
    oidc_provider_arn = "arn:aws:iam::111111111111:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
  }
}

inputs = {
  pool_name           = "media-prod"
  published_addresses = 20
  # A contiguous, publishable range: allocate from your public IPAM pool (or public_ipv4_pool for BYOIP).
  # ipam_pool_id = "ipam-pool-0123456789abcdef0"

  node_trust        = "irsa"
  oidc_provider_arn = dependency.eks.outputs.oidc_provider_arn
  namespace         = "media"
  service_account   = "eipool"

  operator_principal_arns = ["arn:aws:iam::111111111111:role/sre"]
  tags                    = { team = "media" }
}

# Which containers of the admitted media pods got AWS credentials, as the pod identity webhook
# gave them (IRSA: AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE and the token under
# /var/run/secrets/eks.amazonaws.com; EKS Pod Identity: AWS_CONTAINER_* and the token under
# /var/run/secrets/pods.eks.amazonaws.com). Prints one line per container that is not the agent
# and has any of them, and one per agent that has none; nothing when only the agents hold the
# node role. Run on the pods as the API server admitted them:
#   kubectl -n media get pods -l eipool/agent=true -o json | jq -r -f deploy/verify/node-role.jq
# (scripts/check-deploy runs it on pods admitted both ways, and shows each wrong one printed).
def credentials:
  any(.env[]?; .name | test("^AWS_(ROLE_ARN|WEB_IDENTITY_TOKEN_FILE|CONTAINER_[A-Z_]+)$"))
  or any(.volumeMounts[]?; .mountPath | test("^/var/run/secrets/(eks|pods\\.eks)\\.amazonaws\\.com(/|$)"));
.items[]
| .metadata.name as $pod
| ((.spec.initContainers // []) + (.spec.containers // []))[]
| if .name == "eipool-agent" then
    select(credentials | not) | "\($pod)/\(.name): the agent has no AWS credentials (no role on its ServiceAccount?)"
  else
    select(credentials) | "\($pod)/\(.name): has the node role's credentials (name it in eks.amazonaws.com/skip-containers)"
  end

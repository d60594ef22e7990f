"""Authentication, RBAC and admission in the emulator, through the official client:
ServiceAccount tokens and their audiences, TokenReview and TokenRequest, Role/ClusterRole
rules with resourceNames and subresources, the 403 texts of kube-apiserver, the
OwnerReferencesPermissionEnforcement plugin, and the chart's RBAC for the controller."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from canary_playground.kube import EmulatorHandle, running_emulator
from canary_playground.kube.chart import render_chart
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from tests.playground.kube_support import deployment, error_of, new_ns

GROUP, VERSION = "canary.llmops.dev", "v1alpha1"
RBAC = "rbac.authorization.k8s.io"
API_AUDIENCE = "https://kubernetes.default.svc.cluster.local"


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorHandle]:
    with running_emulator(tmp_path_factory.mktemp("kube"), rbac=True,
                          readiness_delay=0.05) as handle:
        yield handle


@pytest.fixture
def admin(api: client.ApiClient) -> client.ApiClient:
    return api


@pytest.fixture
def as_token(emu: EmulatorHandle, tmp_path: Path) -> Iterator[Callable[[str], client.ApiClient]]:
    """An API client authenticating with a given bearer token."""
    made: list[client.ApiClient] = []

    def make(token: str) -> client.ApiClient:
        path = emu.kubeconfig_for(token, tmp_path / f"kubeconfig-{len(made)}")
        api_client = config.new_client_from_config(path)
        made.append(api_client)
        return api_client

    yield make
    for c in made:
        c.close()


def grant(admin: client.ApiClient, ns: str, name: str, rules: list[dict[str, Any]],
          subject: dict[str, Any], *, cluster: bool = False) -> None:
    rbac = client.RbacAuthorizationV1Api(admin)
    role_kind = "ClusterRole" if cluster else "Role"
    body = {"metadata": {"name": name}, "rules": rules}
    if cluster:
        rbac.create_cluster_role(body)
    else:
        rbac.create_namespaced_role(ns, body)
    binding = {"metadata": {"name": name}, "subjects": [subject],
               "roleRef": {"apiGroup": RBAC, "kind": role_kind, "name": name}}
    rbac.create_namespaced_role_binding(ns, binding)


def sa(ns: str, name: str) -> dict[str, Any]:
    return {"kind": "ServiceAccount", "name": name, "namespace": ns}


def forbidden(call: Callable[[], Any]) -> str:
    with pytest.raises(ApiException) as exc:
        call()
    assert exc.value.status == 403, exc.value.body
    err = error_of(exc.value)
    assert err["reason"] == "Forbidden"
    return str(err["message"])


# --------------------------------------------------------------------------- RBAC


def test_rules_with_resource_names_and_subresources(
        emu: EmulatorHandle, admin: client.ApiClient,
        as_token: Callable[[str], client.ApiClient], ns: str) -> None:
    apps_admin = client.AppsV1Api(admin)
    for name in ("web", "other"):
        apps_admin.create_namespaced_deployment(ns, deployment(name))
    grant(admin, ns, "scaler", [
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"],
         "resourceNames": ["web"]},
        {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["patch"]},
    ], sa(ns, "robot"))
    robot = client.AppsV1Api(as_token(emu.issue_token(f"{ns}/robot")))
    user = f"system:serviceaccount:{ns}:robot"
    assert robot.read_namespaced_deployment("web", ns).metadata.name == "web"
    assert forbidden(lambda: robot.read_namespaced_deployment("other", ns)) == (
        f'deployments.apps "other" is forbidden: User "{user}" cannot get resource '
        f'"deployments" in API group "apps" in the namespace "{ns}"')
    # a rule with resourceNames never allows a request without a name
    assert forbidden(lambda: robot.list_namespaced_deployment(ns)) == (
        f'deployments.apps is forbidden: User "{user}" cannot list resource "deployments" '
        f'in API group "apps" in the namespace "{ns}"')
    robot.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 3}})
    assert forbidden(lambda: robot.patch_namespaced_deployment(
        "web", ns, {"spec": {"replicas": 4}})).endswith(
        'cannot patch resource "deployments" in API group "apps" in the namespace '
        f'"{ns}"')
    # the same rules do not reach another namespace
    elsewhere = new_ns()
    assert forbidden(lambda: robot.patch_namespaced_deployment_scale(
        "web", elsewhere, {"spec": {"replicas": 1}})) == (
        f'deployments.apps "web" is forbidden: User "{user}" cannot patch resource '
        f'"deployments/scale" in API group "apps" in the namespace "{elsewhere}"')
    assert apps_admin.read_namespaced_deployment("web", ns).spec.replicas == 3


def test_cluster_roles_groups_and_cluster_scope(
        emu: EmulatorHandle, admin: client.ApiClient,
        as_token: Callable[[str], client.ApiClient], ns: str) -> None:
    rbac = client.RbacAuthorizationV1Api(admin)
    name = f"reader-{ns}"
    rbac.create_cluster_role({"metadata": {"name": name}, "rules": [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}]})
    rbac.create_cluster_role_binding({
        "metadata": {"name": name},
        "subjects": [{"kind": "Group", "name": f"readers-{ns}", "apiGroup": RBAC}],
        "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": name}})
    reader = client.CoreV1Api(as_token(emu.issue_token(user="jane",
                                                       groups=[f"readers-{ns}"])))
    assert reader.list_config_map_for_all_namespaces().items is not None
    assert forbidden(lambda: reader.create_namespaced_config_map(
        ns, {"metadata": {"name": "x"}})) == (
        f'configmaps is forbidden: User "jane" cannot create resource "configmaps" in API '
        f'group "" in the namespace "{ns}"')
    assert forbidden(lambda: client.RbacAuthorizationV1Api(reader.api_client)
                     .list_cluster_role()) == (
        'clusterroles.rbac.authorization.k8s.io is forbidden: User "jane" cannot list '
        'resource "clusterroles" in API group "rbac.authorization.k8s.io" at the cluster '
        'scope')
    review = client.AuthorizationV1Api(reader.api_client).create_self_subject_access_review(
        {"spec": {"resourceAttributes": {"verb": "watch", "resource": "configmaps",
                                         "namespace": ns}}})
    assert review.status.allowed


def test_unknown_token_is_401(emu: EmulatorHandle,
                              as_token: Callable[[str], client.ApiClient]) -> None:
    with pytest.raises(ApiException) as exc:
        client.CoreV1Api(as_token("not-a-token")).list_namespaced_secret("default")
    assert exc.value.status == 401


# --------------------------------------------------------------------------- admission


def test_block_owner_deletion_needs_update_on_the_owners_finalizers(
        emu: EmulatorHandle, admin: client.ApiClient,
        as_token: Callable[[str], client.ApiClient], ns: str) -> None:
    rule = client.CustomObjectsApi(admin).create_namespaced_custom_object(
        GROUP, VERSION, ns, "canaryrules", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "CanaryRule",
            "metadata": {"name": "r"},
            "spec": {"targetRef": {"name": "web"}, "canary": {"image": "app:2"},
                     "steps": [{"weight": 10}], "analysis": {"guards": [
                         {"name": "lat", "metric": "latency", "tolerance": 0.1}]}}})
    grant(admin, ns, "deployer", [{"apiGroups": ["apps"], "resources": ["deployments"],
                                   "verbs": ["create", "get", "patch"]}], sa(ns, "deployer"))
    deployer = client.AppsV1Api(as_token(emu.issue_token(f"{ns}/deployer")))
    ref = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CanaryRule", "name": "r",
           "uid": rule["metadata"]["uid"], "controller": True}
    plain = deployment("plain")
    plain["metadata"]["ownerReferences"] = [ref]
    deployer.create_namespaced_deployment(ns, plain)  # no blockOwnerDeletion: fine
    blocking = deployment("web-canary")
    blocking["metadata"]["ownerReferences"] = [{**ref, "blockOwnerDeletion": True}]
    assert forbidden(lambda: deployer.create_namespaced_deployment(ns, blocking)) == (
        'deployments.apps "web-canary" is forbidden: cannot set blockOwnerDeletion if an '
        "ownerReference refers to a resource you can't set finalizers on: , <nil>")
    # changing ownerReferences on an update needs delete on the object itself
    assert "cannot set an ownerRef on a resource you can't delete" in forbidden(
        lambda: deployer.patch_namespaced_deployment("plain", ns, {"metadata": {
            "ownerReferences": [{**ref, "blockOwnerDeletion": True}]}}))
    grant(admin, ns, "finalizer", [{"apiGroups": [GROUP], "resources": ["canaryrules/finalizers"],
                                    "verbs": ["update"]}], sa(ns, "deployer"))
    created = deployer.create_namespaced_deployment(ns, blocking)
    assert created.metadata.owner_references[0].block_owner_deletion is True


# --------------------------------------------------------------------------- tokens


def review(api_client: client.ApiClient, token: str,
           audiences: list[str] | None = None) -> client.V1TokenReviewStatus:
    spec: dict[str, Any] = {"token": token}
    if audiences is not None:
        spec["audiences"] = audiences
    answer = client.AuthenticationV1Api(api_client).create_token_review({"spec": spec})
    return answer.status


def test_token_review_honours_audiences_and_expiry(
        emu: EmulatorHandle, admin: client.ApiClient,
        as_token: Callable[[str], client.ApiClient]) -> None:
    ingest = emu.issue_token("default/support-assistant", audiences=["llm-canary"])
    status = review(admin, ingest, ["llm-canary"])
    assert status.authenticated is True and status.audiences == ["llm-canary"]
    assert status.user.username == "system:serviceaccount:default:support-assistant"
    assert status.user.groups == ["system:serviceaccounts", "system:serviceaccounts:default",
                                  "system:authenticated"]
    assert status.user.uid
    refused = review(admin, ingest, ["other"])
    assert not refused.authenticated
    assert refused.error == ('[invalid bearer token, token audiences ["llm-canary"] is '
                             'invalid for the target audiences ["other"]]')
    # no audiences in the review: the API server's own, which this token is not for
    assert not review(admin, ingest).authenticated
    with pytest.raises(ApiException) as exc:  # nor can it call the API
        client.CoreV1Api(as_token(ingest)).list_namespaced_pod("default")
    assert exc.value.status == 401
    # and an API token is not an ingestion token
    api_token = emu.issue_token("default/support-assistant")
    assert review(admin, api_token).authenticated
    assert not review(admin, api_token, ["llm-canary"]).authenticated
    short = emu.issue_token("default/support-assistant", audiences=["llm-canary"],
                            expiration_seconds=1)
    assert review(admin, short, ["llm-canary"]).authenticated
    time.sleep(1.2)
    expired = review(admin, short, ["llm-canary"])
    assert not expired.authenticated
    assert expired.error == "[invalid bearer token, service account token has expired]"
    garbage = review(admin, "garbage", ["llm-canary"])
    assert not garbage.authenticated and "invalid bearer token" in garbage.error


def test_token_review_needs_create_on_tokenreviews(
        emu: EmulatorHandle, admin: client.ApiClient,
        as_token: Callable[[str], client.ApiClient], ns: str) -> None:
    caller = as_token(emu.issue_token(f"{ns}/ingest"))
    token = emu.issue_token("default/app", audiences=["llm-canary"])
    user = f"system:serviceaccount:{ns}:ingest"
    assert forbidden(lambda: review(caller, token, ["llm-canary"])) == (
        f'tokenreviews.authentication.k8s.io is forbidden: User "{user}" cannot create '
        'resource "tokenreviews" in API group "authentication.k8s.io" at the cluster scope')
    rbac = client.RbacAuthorizationV1Api(admin)
    rbac.create_cluster_role({"metadata": {"name": f"review-{ns}"}, "rules": [
        {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"],
         "verbs": ["create"]}]})
    rbac.create_cluster_role_binding({
        "metadata": {"name": f"review-{ns}"}, "subjects": [sa(ns, "ingest")],
        "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": f"review-{ns}"}})
    assert review(caller, token, ["llm-canary"]).authenticated


def test_token_request_binds_the_service_account(emu: EmulatorHandle, admin: client.ApiClient,
                                                 as_token: Callable[[str], client.ApiClient],
                                                 ns: str) -> None:
    core = client.CoreV1Api(admin)
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_service_account_token("app", ns, {"spec": {"audiences": []}})
    assert exc.value.status == 404
    core.create_namespaced_service_account(ns, {"metadata": {"name": "app"}})
    answer = core.create_namespaced_service_account_token(
        "app", ns, {"spec": {"audiences": ["llm-canary"], "expirationSeconds": 3600}})
    token = answer.status.token
    assert token.count(".") == 2  # a JWT
    status = review(admin, token, ["llm-canary"])
    assert status.authenticated
    assert status.user.uid == core.read_namespaced_service_account("app", ns).metadata.uid
    core.delete_namespaced_service_account("app", ns)
    gone = review(admin, token, ["llm-canary"])
    assert not gone.authenticated and "has been deleted" in gone.error


# --------------------------------------------------------------------------- the chart


def test_chart_rbac_is_what_the_controller_gets(tmp_path: Path) -> None:
    with running_emulator(tmp_path, rbac_from_chart=True) as emu:
        me = emu.controller
        assert me is not None
        assert me.username == "system:serviceaccount:llm-canary:llm-canary"
        assert me.lease_name == "llm-canary-leader"
        controller = config.new_client_from_config(me.kubeconfig)
        admin = config.new_client_from_config(emu.kubeconfig)
        try:
            apps = client.AppsV1Api(controller)
            client.AppsV1Api(admin).create_namespaced_deployment("default", deployment())
            apps.patch_namespaced_deployment_scale("web", "default", {"spec": {"replicas": 3}})
            client.CustomObjectsApi(controller).list_cluster_custom_object(
                GROUP, VERSION, "canaryrules")
            assert forbidden(lambda: apps.delete_namespaced_deployment("web", "default")) == (
                'deployments.apps "web" is forbidden: User "system:serviceaccount:llm-canary:'
                'llm-canary" cannot delete resource "deployments" in API group "apps" in the '
                'namespace "default"')
            core = client.CoreV1Api(controller)
            forbidden(lambda: core.list_namespaced_secret("default"))  # get by name only
            leases = client.CoordinationV1Api(controller)
            body = {"metadata": {"name": me.lease_name}, "spec": {"holderIdentity": "x"}}
            leases.create_namespaced_lease("llm-canary", body)
            leases.read_namespaced_lease(me.lease_name, "llm-canary")
            forbidden(lambda: leases.read_namespaced_lease(me.lease_name, "default"))
            # a reset keeps what the chart loaded
            emu.reset()
            client.CustomObjectsApi(controller).list_cluster_custom_object(
                GROUP, VERSION, "canaryrules")
            loaded = sorted(d["kind"] for d in me.objects)
            assert loaded == sorted(d["kind"] for d in render_chart() if d["kind"] in {
                "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"})
            # the controller's own ClusterRole, and the one for TokenReview (ingestion)
            assert loaded == ["ClusterRole", "ClusterRole", "ClusterRoleBinding",
                              "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount"]
            review = client.AuthenticationV1Api(controller).create_token_review(
                {"spec": {"token": "not-a-token", "audiences": ["llm-canary"]}})
            assert review.status.authenticated is not True
        finally:
            controller.close()
            admin.close()

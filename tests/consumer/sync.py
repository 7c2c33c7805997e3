"""The city platform's view of Lianqiao, through a generated client.

Run by `cargo xtask test` after `openapi-python-client` generated a client
from the running demo's /openapi.json (with its defaults: the package name
comes from the document's title). Two parts:

1. the generated package has every operation of the document, each with
   its required parameters (and `X-Purpose`) as required arguments;
2. a small typed sync as the city (1501): every division under 1501 by
   cursor, member counts per district, the service centres, the cases.

Usage: sync.py <openapi.json> <generated project dir> <base url> <city token>
"""

import importlib
import inspect
import json
import pkgutil
import sys

from openapi_python_client.strings import PythonIdentifier


def fail(message):
    print(f"consumer check FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def resolve(spec, node):
    while "$ref" in node:
        target = spec
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def operations(spec):
    for path, item in spec["paths"].items():
        for method, op in item.items():
            yield path, method, op


def generated_modules(package):
    api = importlib.import_module(f"{package}.api")
    modules = {}
    for info in pkgutil.walk_packages(api.__path__, f"{package}.api."):
        module = importlib.import_module(info.name)
        if hasattr(module, "sync_detailed"):
            modules[info.name.rsplit(".", 1)[1]] = module
    return modules


def check_operations(spec, package):
    modules = generated_modules(package)
    checked = 0
    for path, method, op in operations(spec):
        name = str(PythonIdentifier(op["operationId"], prefix="op"))
        module = modules.get(name)
        if module is None:
            fail(f"{method.upper()} {path} ({op['operationId']}) was not generated")
        signature = inspect.signature(module.sync_detailed)
        for parameter in op.get("parameters", []):
            parameter = resolve(spec, parameter)
            arg = str(PythonIdentifier(parameter["name"], prefix="parameter"))
            if arg not in signature.parameters:
                fail(f"{op['operationId']}: no argument for `{parameter['name']}` ({arg})")
            default = signature.parameters[arg].default
            if parameter.get("required") and default is not inspect.Parameter.empty:
                fail(f"{op['operationId']}: `{parameter['name']}` is required but has a default")
        checked += 1
    print(f"consumer: {checked} operations generated, each with its required arguments")
    return modules


def sync(package, modules, base_url, token):
    client_mod = importlib.import_module(package)
    models = importlib.import_module(f"{package}.models")
    types = importlib.import_module(f"{package}.types")
    client = client_mod.AuthenticatedClient(base_url=base_url, token=token, raise_on_unexpected_status=True)
    case_handling = models.Purpose("case-handling")

    def all_pages(operation, expected, **query):
        rows, cursor, pages = [], types.UNSET, 0
        while True:
            page = modules[operation].sync(client=client, x_purpose=case_handling, cursor=cursor, **query)
            if not isinstance(page, expected):
                fail(f"{operation}({query}): {page!r}")
            pages += 1
            if not page.data and page.page.next_cursor:
                fail(f"{operation}: an empty page carries a cursor")
            rows.extend(page.data)
            if page.page.next_cursor is None:
                return rows, pages
            cursor = page.page.next_cursor

    divisions, pages = all_pages("list_divisions", models.DivisionList, division="1501", limit=100)
    codes = {d.id for d in divisions}
    if "1501" not in codes:
        fail("the city's own division (1501) is not listed under division=1501")
    city = next(d for d in divisions if d.id == "1501")
    if city.national_code != "150100":
        fail(f"division 1501 says national_code {city.national_code!r}, not 150100")
    outside = [d.id for d in divisions if not d.id.startswith("1501")]
    if outside:
        fail(f"divisions outside 1501 listed: {outside[:5]}")
    if len(codes) != len(divisions):
        fail("a division was listed twice across pages")
    districts = sorted(d.id for d in divisions if d.level and d.level.value == "district")
    print(f"consumer: {len(divisions)} divisions under 1501 in {pages} pages; districts {districts}")

    by_alias = modules["get_division"].sync(client=client, x_purpose=case_handling, code="150100")
    if not isinstance(by_alias, models.DivisionResponse) or by_alias.data.id != "1501":
        fail(f"/v1/divisions/150100 did not answer division 1501: {by_alias!r}")
    children, _ = all_pages("list_divisions", models.DivisionList, parent="150100", limit=100)
    if sorted(c.id for c in children) != districts:
        fail(f"parent=150100 lists {sorted(c.id for c in children)}, not the districts {districts}")

    stats = modules["get_stats"].sync(
        client=client,
        x_purpose=models.Purpose("statistics"),
        metric=models.Metric("members.count"),
        division="1501",
        group_by=models.GroupLevel("district"),
    )
    if not isinstance(stats, models.StatsResponse):
        fail(f"stats: {stats!r}")
    counted = sorted(c.division for c in stats.data if isinstance(c.division, str))
    missing = [d for d in districts if d not in counted]
    if missing:
        fail(f"member counts lack the districts {missing} (cells: {counted})")
    for c in stats.data:
        if c.value is None and not (c.suppressed or c.not_covered):
            fail(f"a count without a value is neither suppressed nor not covered: {c!r}")
    print(f"consumer: member counts per district ({stats.policy.counts}): "
          + ", ".join(f"{c.division}={c.value if c.value is not None else ('not covered' if c.not_covered else 'suppressed')}" for c in stats.data))

    centres, _ = all_pages("list_service_centers", models.ServiceCenterList, division="1501", limit=200)
    cases, _ = all_pages("list_cases", models.CaseList, division="1501", limit=200)
    if not centres or not cases:
        fail(f"{len(centres)} service centres and {len(cases)} cases under 1501")
    print(f"consumer: {len(centres)} service centres, {len(cases)} cases under 1501")


def main():
    spec_path, project_dir, base_url, token = sys.argv[1:5]
    with open(spec_path, encoding="utf-8") as f:
        spec = json.load(f)
    sys.path.insert(0, project_dir)
    packages = [m.name for m in pkgutil.iter_modules([project_dir]) if m.ispkg]
    if len(packages) != 1:
        fail(f"expected one generated package in {project_dir}, found {packages}")
    modules = check_operations(spec, packages[0])
    sync(packages[0], modules, base_url, token)


if __name__ == "__main__":
    main()

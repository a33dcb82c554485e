import CoreMetrics
import Metrics
import Prometheus

/// Per-function Prometheus series, created once at start-up so an invocation only bumps them:
/// - `fnhost_function_invocations_total{function,trigger,outcome}` (outcome: success, client_error, server_error, failure)
/// - `fnhost_function_duration_seconds{function,trigger}` (histogram)
/// - `fnhost_function_in_flight{function}` (gauge)
/// - `fnhost_http_unrouted_total{status}` for requests no function answered (404, 405, 413)
public final class FunctionMetrics: Sendable {
    public enum Outcome: String, Sendable, CaseIterable {
        case success
        case clientError = "client_error"
        case serverError = "server_error"
        case failure
    }

    struct Series: Sendable {
        let outcomes: [Outcome: CoreMetrics.Counter]
        let duration: CoreMetrics.Timer
        let inFlight: Meter
    }

    public let registry: PrometheusCollectorRegistry
    private let series: [Series]
    private let unrouted: [Int: CoreMetrics.Counter]

    public init(catalog: FunctionCatalog, registry: PrometheusCollectorRegistry) {
        self.registry = registry
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
            .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
            .seconds(1), .seconds(2.5), .seconds(5), .seconds(10), .seconds(30),
        ]
        series = catalog.functions.map { function in
            let trigger = function.spec.trigger.bindingType
            let outcomes: [Outcome] = function.spec.httpTrigger != nil
                ? [.success, .clientError, .serverError] : [.success, .failure]
            var counters: [Outcome: CoreMetrics.Counter] = [:]
            for outcome in outcomes {
                counters[outcome] = CoreMetrics.Counter(
                    label: "fnhost_function_invocations_total",
                    dimensions: [("function", function.name), ("trigger", trigger), ("outcome", outcome.rawValue)],
                    factory: factory)
            }
            return Series(
                outcomes: counters,
                duration: CoreMetrics.Timer(
                    label: "fnhost_function_duration_seconds",
                    dimensions: [("function", function.name), ("trigger", trigger)], factory: factory),
                inFlight: Meter(label: "fnhost_function_in_flight", dimensions: [("function", function.name)], factory: factory))
        }
        var unrouted: [Int: CoreMetrics.Counter] = [:]
        for status in [400, 404, 405, 413] {
            unrouted[status] = CoreMetrics.Counter(
                label: "fnhost_http_unrouted_total", dimensions: [("status", String(status))], factory: factory)
        }
        self.unrouted = unrouted
        // `fnhost_build_info{version} 1`: which binary each instance runs (rollbacks, mixed fleets).
        Gauge(label: "fnhost_build_info", dimensions: [("version", RuntimeEndpoints.version)], factory: factory).record(1)
    }

    func started(_ function: Int) {
        series[function].inFlight.increment()
    }

    func finished(_ function: Int, outcome: Outcome, nanoseconds: Int64) {
        let entry = series[function]
        entry.inFlight.decrement()
        entry.duration.recordNanoseconds(nanoseconds)
        entry.outcomes[outcome]?.increment()
    }

    func unrouted(status: Int) {
        unrouted[status]?.increment()
    }

    /// The Prometheus text exposition of every series.
    public func exposition() -> [UInt8] {
        registry.emitToBuffer()
    }
}

#pragma once

namespace cdcbench {
enum class CaptureOp { kInsertTx, kUpdateTx, kDeleteTx, kInsertAuto };
void RegisterCaptureBenchmarks();
void RegisterDeliveryBenchmarks();
void RegisterListenerBenchmarks();  // listener_bench.cc
void RegisterBusyBenchmarks();      // busy_bench.cc
}  // namespace cdcbench

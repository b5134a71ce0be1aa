#pragma once

namespace cdcbench {
enum class CaptureOp { kInsertTx, kUpdateTx, kDeleteTx, kInsertAuto };
void RegisterCaptureBenchmarks();
void RegisterDeliveryBenchmarks();
}  // namespace cdcbench

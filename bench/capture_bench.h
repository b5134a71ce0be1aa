#pragma once

namespace cdcbench {
enum class CaptureOp { kInsertTx, kUpdateTx, kDeleteTx, kInsertAuto };
void RegisterCaptureBenchmarks();
}  // namespace cdcbench

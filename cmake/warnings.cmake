# Strict warnings for our own code only; generated protobuf-c code is compiled
# in its own target without them (see proto/CMakeLists.txt).
set(MFT_WARNINGS -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-format-truncation -Wno-unused-parameter)
add_compile_definitions(_GNU_SOURCE OPENSSL_API_COMPAT=30000 OPENSSL_NO_DEPRECATED)
function(mft_strict target)
  target_compile_options(${target} PRIVATE ${MFT_WARNINGS})
endfunction()

# Strict warnings for our own code only; generated protobuf-c code is compiled
# in its own target without them (see proto/CMakeLists.txt). GCC's
# -Wformat-truncation is off: every snprintf into a fixed buffer is bounded by
# design and truncation is checked where it matters.
set(MFT_WARNINGS -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-unused-parameter)
if(CMAKE_C_COMPILER_ID STREQUAL "GNU")
  list(APPEND MFT_WARNINGS -Wno-format-truncation)
endif()
add_compile_definitions(_GNU_SOURCE OPENSSL_API_COMPAT=30000 OPENSSL_NO_DEPRECATED)
function(mft_strict target)
  target_compile_options(${target} PRIVATE ${MFT_WARNINGS})
endfunction()
